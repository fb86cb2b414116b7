"""What the yfinance adapter tests share: yfinance's isolation, the two flavours, fetch helpers.

Both adapters (`YFinanceChartSource` over the chart API, `YFinanceQuoteSource` over the
quote scraper) run yfinance's real code against an offline fake Yahoo. A `Flavour` pairs one
adapter with its fake and says how many requests one attempt of the adapter sends per ticker.

`isolated_yfinance` is an autouse fixture: a test module imports it to get a fresh yfinance
singleton per test and yfinance's config and cache location restored afterwards.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yfinance as yf
from yfinance import cache as yf_cache
from yfinance.data import SingletonMeta, YfData

from stockalert.adapters.yfinance.batch import YahooBatchSource
from stockalert.adapters.yfinance.chart import YFinanceChartSource
from stockalert.adapters.yfinance.quote import YFinanceQuoteSource
from stockalert.domain.model import Ticker
from stockalert.domain.ports import PriceResult
from tests.unit.yahoo_fake import FakeYahoo
from tests.unit.yahoo_fake_quote import FakeYahooQuote

QUOTED_AT = datetime(2026, 1, 5, 21, 0, 0, tzinfo=UTC)  # Yahoo's time, long before "now"
HANDSHAKE = ["https://fc.yahoo.com/", "https://query1.finance.yahoo.com/v1/test/getcrumb"]
YAHOO_HOSTS = {"fc.yahoo.com", "query1.finance.yahoo.com", "query2.finance.yahoo.com"}


def _forget_yfinance_singleton() -> None:
    # YfData is a process-wide singleton (session, cookie, crumb, cookie strategy) held in
    # its metaclass's registry; dropping the entry makes the next YfData() a fresh one.
    SingletonMeta._instances.pop(YfData, None)
    YfData.cache_get.cache_clear()


def _reopen_caches_at(location: str) -> None:
    yf.set_tz_cache_location(location)  # closes the open databases; creates nothing
    yf_cache._TzCacheManager._tz_cache = None
    yf_cache._CookieCacheManager._Cookie_cache = None
    yf_cache._ISINCacheManager._isin_cache = None


@pytest.fixture(autouse=True)
def isolated_yfinance() -> Iterator[None]:
    """Each test starts with a new yfinance singleton and leaves config and caches as found."""
    hide_exceptions = yf.config.debug.hide_exceptions
    location = yf_cache._TzDBManager.get_location()
    _forget_yfinance_singleton()
    yield
    _forget_yfinance_singleton()
    yf.config.debug.hide_exceptions = hide_exceptions
    _reopen_caches_at(location)


@dataclass(frozen=True)
class Flavour:
    """One adapter, the fake Yahoo it runs against, and what one attempt of it sends."""

    name: str
    adapter: type[YahooBatchSource]
    fake: Callable[[], FakeYahoo]
    # The requests one successful attempt sends per ticker, counted by `calls`.
    calls_per_attempt: int
    counter: Callable[[FakeYahoo], Counter[str]]

    def calls(self, yahoo: FakeYahoo, symbol: str) -> int:
        """How many of this adapter's per-ticker requests the fake got for `symbol`."""
        return self.counter(yahoo)[symbol]

    def source(
        self,
        yahoo: FakeYahoo,
        tmp_path: Path,
        sleeps: list[float] | None = None,
        *,
        timeout_s: float = 2.0,
        deadline_s: float = 5.0,
        jitter: float = 0.5,
    ) -> YahooBatchSource:
        """The adapter on the fake, with a recorded (non-sleeping) backoff and a fixed jitter."""
        recorded = sleeps if sleeps is not None else []
        return self.adapter(
            session_factory=yahoo.session,
            cache_dir=tmp_path / "yfinance",
            sleep=recorded.append,
            jitter=lambda: jitter,
            timeout_s=timeout_s,
            deadline_s=deadline_s,
        )


def _quote_calls(yahoo: FakeYahoo) -> Counter[str]:
    assert isinstance(yahoo, FakeYahooQuote)
    return yahoo.quote_calls


CHART = Flavour(
    name="chart",
    adapter=YFinanceChartSource,
    fake=FakeYahoo,
    calls_per_attempt=1,  # GET /v8/finance/chart/SYMBOL
    counter=lambda yahoo: yahoo.chart_calls,
)
QUOTE = Flavour(
    name="quote",
    adapter=YFinanceQuoteSource,
    fake=FakeYahooQuote,
    calls_per_attempt=2,  # GET /v10/finance/quoteSummary/SYMBOL, then GET /v7/finance/quote
    counter=_quote_calls,
)
FLAVOURS = [CHART, QUOTE]


def fetch(src: YahooBatchSource, *symbols: str) -> dict[str, PriceResult]:
    """`src.fetch` of these symbols, keyed by symbol."""
    return {t.value: r for t, r in src.fetch([Ticker(s) for s in symbols]).items()}


def fetched_twice(flavour: Flavour, tmp_path: Path) -> FakeYahoo:
    """The flavour's fake Yahoo after two fetches of AAPL and MSFT through one source."""
    yahoo = flavour.fake()
    yahoo.add("AAPL")
    yahoo.add("MSFT")
    src = flavour.source(yahoo, tmp_path)
    fetch(src, "AAPL", "MSFT")
    fetch(src, "AAPL", "MSFT")
    return yahoo


def settle(yahoo: FakeYahoo, timeout_s: float = 5.0) -> None:
    """Let the worker threads (yfinance_N) that `fetch` left running at its deadline finish.

    A late worker finishes its request and parses the answer after `fetch` returned: still
    running in the next test, it would use the yfinance singleton that test resets and emit
    yfinance's pandas warnings where no filter hides them. SLOW answers are released at once.
    """
    yahoo.release()
    for thread in threading.enumerate():
        if thread.name.startswith("yfinance_"):
            thread.join(timeout_s)

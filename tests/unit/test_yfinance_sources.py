"""The price-source contract both yfinance adapters keep, each against its offline fake Yahoo.

Every test runs once per flavour: "chart" (`YFinanceChartSource`, one chart request per
ticker) and "quote" (`YFinanceQuoteSource`, quoteSummary + v7 quote per ticker), so a
failing id names the adapter. What only one adapter does is in test_yfinance_source.py
(chart) and test_yfinance_quote_source.py (quote). No request leaves the process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import platformdirs
import pytest
import requests
from yfinance import cache as yf_cache
from yfinance.data import YfData

from stockalert.domain.model import Quote, Ticker
from stockalert.domain.ports import FetchFailed, UnknownTicker
from tests.unit.yahoo_fake import Behaviour, FakeYahoo
from tests.unit.yfinance_harness import (  # noqa: F401  # isolated_yfinance: autouse fixture
    FLAVOURS,
    HANDSHAKE,
    QUOTED_AT,
    YAHOO_HOSTS,
    Flavour,
    fetch,
    fetched_twice,
    isolated_yfinance,
    settle,
)

# yfinance's own code triggers pandas 3 deprecation notices on every call.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:yfinance")

YF_HOME_CACHE = Path(platformdirs.user_cache_dir()) / "py-yfinance"


@pytest.fixture(params=FLAVOURS, ids=lambda flavour: flavour.name)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    """Each adapter in turn, with its fake Yahoo."""
    return cast("Flavour", request.param)


@pytest.fixture
def yahoo(flavour: Flavour) -> Iterator[FakeYahoo]:
    """The flavour's fake Yahoo; no request to it outlives the test."""
    fake = flavour.fake()
    yield fake
    settle(fake)


@pytest.fixture
def sleeps() -> list[float]:
    return []


def test_several_tickers_each_get_their_quote_at_yahoos_quote_time(
    flavour: Flavour, yahoo: FakeYahoo, tmp_path: Path
) -> None:
    """Every ticker of a batch gets its own price, stamped with Yahoo's regularMarketTime in UTC."""
    yahoo.add("AAPL", price=212.49, quoted_at=QUOTED_AT)
    yahoo.add("MSFT", price=441.06, quoted_at=datetime(2026, 1, 5, 20, 59, 58, tzinfo=UTC))
    yahoo.add("0700.HK", price=388.2, quoted_at=datetime(2026, 1, 5, 8, 8, 8, tzinfo=UTC))

    results = fetch(flavour.source(yahoo, tmp_path), "AAPL", "MSFT", "0700.HK")

    assert results == {
        "AAPL": Quote(Ticker("AAPL"), 212.49, QUOTED_AT),
        "MSFT": Quote(Ticker("MSFT"), 441.06, datetime(2026, 1, 5, 20, 59, 58, tzinfo=UTC)),
        "0700.HK": Quote(Ticker("0700.HK"), 388.2, datetime(2026, 1, 5, 8, 8, 8, tzinfo=UTC)),
    }
    for result in results.values():
        assert isinstance(result, Quote)
        assert type(result.quoted_at) is datetime
        assert result.quoted_at.tzinfo is UTC


def test_one_handshake_then_one_attempt_per_ticker_and_fetch(
    flavour: Flavour, tmp_path: Path
) -> None:
    """yfinance gets a cookie and a crumb once, then each fetch sends one attempt per ticker."""
    yahoo = fetched_twice(flavour, tmp_path)

    assert yahoo.urls[:2] == HANDSHAKE
    per_ticker = 2 * flavour.calls_per_attempt  # 2 fetches, one attempt each
    assert len(yahoo.urls) - 2 == 2 * per_ticker
    assert flavour.calls(yahoo, "AAPL") == flavour.calls(yahoo, "MSFT") == per_ticker
    assert yahoo.hosts() <= YAHOO_HOSTS


def test_an_unknown_symbol_is_an_unknown_ticker(
    flavour: Flavour, yahoo: FakeYahoo, tmp_path: Path
) -> None:
    """Yahoo's 404 for a symbol it does not know is the user's mistake, not an outage."""
    # chart: "No data found, symbol may be delisted"; quote: "Quote not found for symbol".
    yahoo.add("AAPL")
    yahoo.add("NOPE", Behaviour.UNKNOWN)

    results = fetch(flavour.source(yahoo, tmp_path), "AAPL", "NOPE")

    assert results["NOPE"] == UnknownTicker(Ticker("NOPE"))
    assert isinstance(results["AAPL"], Quote)


def test_a_rate_limit_is_retried_with_backoff_and_then_quoted(
    flavour: Flavour, yahoo: FakeYahoo, tmp_path: Path, sleeps: list[float]
) -> None:
    """A 429 that yfinance's own second try still gets is retried by us after a backoff."""
    # yfinance answers a 429 by switching cookie strategy and asking once more: two 429s
    # make one failed attempt of ours.
    yahoo.add("AAPL", Behaviour.RATE_LIMITED_THEN_OK, failures=2, price=212.49, quoted_at=QUOTED_AT)

    results = fetch(flavour.source(yahoo, tmp_path, sleeps), "AAPL")

    assert results["AAPL"] == Quote(Ticker("AAPL"), 212.49, QUOTED_AT)
    # 429, 429 (yfinance's retry), then the 200s of one whole attempt
    assert flavour.calls(yahoo, "AAPL") == 2 + flavour.calls_per_attempt
    assert sleeps == [0.5]  # one backoff: 0.5 s, jitter fixed at its middle


@pytest.mark.parametrize(
    ("behaviour", "reason", "requests_per_attempt"),
    [
        # yfinance answers a 429 by asking once more, so a rate-limited attempt is 2 requests;
        # an attempt stops at its first request either way.
        pytest.param(Behaviour.RATE_LIMITED, "rate limited", 2, id="rate_limited"),
        pytest.param(Behaviour.CONNECTION_ERROR, "network error", 1, id="connection_refused"),
    ],
)
def test_a_retryable_failure_gives_up_after_a_bounded_number_of_attempts(
    flavour: Flavour,
    yahoo: FakeYahoo,
    tmp_path: Path,
    sleeps: list[float],
    behaviour: Behaviour,
    reason: str,
    requests_per_attempt: int,
) -> None:
    """Always 429 or refused: FetchFailed saying which after 3 attempts and 2 growing backoffs."""
    yahoo.add("AAPL", behaviour)

    result = fetch(flavour.source(yahoo, tmp_path, sleeps), "AAPL")["AAPL"]

    assert isinstance(result, FetchFailed)
    assert result.reason.startswith(reason)
    assert "3 attempts" in result.reason
    assert flavour.calls(yahoo, "AAPL") == 3 * requests_per_attempt
    assert sleeps == [0.5, 1.0]


def test_the_backoff_is_jittered_around_the_exponential_delay(
    flavour: Flavour, yahoo: FakeYahoo, tmp_path: Path
) -> None:
    """Backoffs stay within +-25% of 0.5 s then 1 s, so that clients do not retry in step."""
    yahoo.add("AAPL", Behaviour.RATE_LIMITED)
    for jitter, expected in ((0.0, [0.375, 0.75]), (0.999, [0.62475, 1.2495])):
        sleeps: list[float] = []
        fetch(flavour.source(yahoo, tmp_path, sleeps, jitter=jitter), "AAPL")
        assert sleeps == pytest.approx(expected)


def test_a_slow_server_times_out_within_the_request_timeout(
    flavour: Flavour, yahoo: FakeYahoo, tmp_path: Path
) -> None:
    """A server slower than timeout_s: FetchFailed("timeout ...") about timeout_s later."""
    # yfinance's chart request asks with timeout_s; its quote scraper with a fixed 30 s, which
    # the quote adapter caps at timeout_s.
    yahoo.add("AAPL")
    yahoo.add("SLOW", Behaviour.SLOW, delay_s=30.0)
    src = flavour.source(yahoo, tmp_path, timeout_s=0.2)
    fetch(src, "AAPL")  # the cookie/crumb handshake is not what this test times

    started = time.monotonic()
    results = fetch(src, "AAPL", "SLOW")
    elapsed = time.monotonic() - started

    slow = results["SLOW"]
    assert isinstance(slow, FetchFailed)
    assert slow.reason.startswith("timeout after 0.2 s")
    assert isinstance(results["AAPL"], Quote)
    assert flavour.calls(yahoo, "SLOW") == 1  # a timeout is not retried: the batch has a budget
    assert 0.2 <= elapsed < 1.0


def test_the_batch_deadline_bounds_the_whole_call(
    flavour: Flavour, yahoo: FakeYahoo, tmp_path: Path
) -> None:
    """Tickers still unanswered at the deadline are FetchFailed("timeout ..."); fetch returns."""
    yahoo.add("AAPL")
    yahoo.add("SLOW", Behaviour.SLOW, delay_s=1.5)  # still waiting at the end: `yahoo` settles it
    src = flavour.source(yahoo, tmp_path, timeout_s=10.0, deadline_s=0.3)
    fetch(src, "AAPL")

    started = time.monotonic()
    results = fetch(src, "AAPL", "SLOW")
    elapsed = time.monotonic() - started

    assert results["SLOW"] == FetchFailed(
        Ticker("SLOW"), "timeout: no answer within the batch deadline of 0.3 s"
    )
    assert isinstance(results["AAPL"], Quote)
    assert 0.3 <= elapsed < 1.0


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        pytest.param(Behaviour.MALFORMED, "malformed answer", id="malformed"),
        pytest.param(Behaviour.TRUNCATED, "malformed answer", id="truncated"),
        pytest.param(Behaviour.ZERO_PRICE, "unusable price from Yahoo: 0.0", id="zero_price"),
    ],
)
def test_an_unusable_answer_fails_that_ticker_only(
    flavour: Flavour,
    yahoo: FakeYahoo,
    tmp_path: Path,
    sleeps: list[float],
    behaviour: Behaviour,
    words: str,
) -> None:
    """HTML, truncated JSON or a zero price: FetchFailed for that ticker, without retrying."""
    yahoo.add("AAPL")
    yahoo.add("BAD", behaviour)

    results = fetch(flavour.source(yahoo, tmp_path, sleeps), "AAPL", "BAD")

    bad = results["BAD"]
    assert isinstance(bad, FetchFailed)
    assert words in bad.reason
    assert isinstance(results["AAPL"], Quote)
    assert 1 <= flavour.calls(yahoo, "BAD") <= flavour.calls_per_attempt  # one attempt only
    assert sleeps == []


def test_no_exception_escapes_fetch(
    flavour: Flavour, yahoo: FakeYahoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken session factory or transport turns into FetchFailed, never into an exception."""

    def no_session() -> requests.Session:
        raise RuntimeError("no network stack today")

    broken = flavour.adapter(session_factory=no_session, cache_dir=tmp_path / "yf")
    assert fetch(broken, "AAPL") == {
        "AAPL": FetchFailed(Ticker("AAPL"), "price source error: no network stack today")
    }

    def transport_bug(*args: object, **kwargs: object) -> requests.Response:
        raise RuntimeError("transport bug")

    monkeypatch.setattr(yahoo, "_answer", transport_bug)  # every per-ticker request raises
    result = fetch(flavour.source(yahoo, tmp_path), "AAPL")["AAPL"]
    assert isinstance(result, FetchFailed)
    assert "transport bug" in result.reason


def test_one_result_per_requested_ticker(
    flavour: Flavour, yahoo: FakeYahoo, tmp_path: Path
) -> None:
    """Mixed outcomes, duplicates and an empty batch: exactly the requested tickers come back."""
    yahoo.add("AAPL")
    yahoo.add("RATE", Behaviour.RATE_LIMITED)
    yahoo.add("HTML", Behaviour.MALFORMED)
    yahoo.add("ZERO", Behaviour.ZERO_PRICE)
    wanted = [Ticker(s) for s in ("AAPL", "NOPE", "RATE", "HTML", "ZERO", "AAPL")]
    src = flavour.source(yahoo, tmp_path)

    results = src.fetch(wanted)

    assert list(results) == [Ticker(s) for s in ("AAPL", "NOPE", "RATE", "HTML", "ZERO")]
    assert all(r.ticker == t for t, r in results.items())
    assert results[Ticker("NOPE")] == UnknownTicker(Ticker("NOPE"))
    assert src.fetch([]) == {}


def test_yfinance_caches_live_in_the_given_folder_only(
    flavour: Flavour, yahoo: FakeYahoo, tmp_path: Path
) -> None:
    """The tz, cookie and ISIN caches point at cache_dir; nothing goes to ~/.cache/py-yfinance."""
    before = sorted(YF_HOME_CACHE.iterdir()) if YF_HOME_CACHE.exists() else None
    yahoo.add("AAPL")
    cache_dir = tmp_path / "state" / "yfinance"

    result = fetch(flavour.source(yahoo, tmp_path / "state"), "AAPL")["AAPL"]

    assert isinstance(result, Quote)
    assert yf_cache._TzDBManager.get_location() == str(cache_dir)
    assert yf_cache._CookieDBManager.get_location() == str(cache_dir)
    assert yf_cache._ISINDBManager.get_location() == str(cache_dir)
    assert (cache_dir / "cookies.db").is_file()  # the A3 cookie yfinance keeps
    after = sorted(YF_HOME_CACHE.iterdir()) if YF_HOME_CACHE.exists() else None
    assert after == before
    assert YfData()._session.get_adapter("https://query2.finance.yahoo.com") is yahoo


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_starts_with_a_fresh_yfinance_singleton(
    flavour: Flavour, yahoo: FakeYahoo, tmp_path: Path, run: int
) -> None:
    """The fixture resets yfinance's singleton: every run does the cookie/crumb handshake."""
    yahoo.add("AAPL")

    assert isinstance(fetch(flavour.source(yahoo, tmp_path), "AAPL")["AAPL"], Quote)

    assert yahoo.urls[0] == "https://fc.yahoo.com/"
    assert YfData()._session.get_adapter("https://query2.finance.yahoo.com") is yahoo

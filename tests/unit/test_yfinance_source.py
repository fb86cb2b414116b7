"""The yfinance price source against an offline fake of Yahoo (no request leaves the process)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import platformdirs
import pytest
import requests
import yfinance as yf
from yfinance import cache as yf_cache
from yfinance.data import SingletonMeta, YfData

from stockalert.adapters.yfinance_source import YFinancePriceSource
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.ports import FetchFailed, PriceResult, UnknownTicker
from tests.unit.yahoo_fake import Behaviour, FakeYahoo

# yfinance's own code triggers pandas 3 deprecation notices on every call.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:yfinance")

QUOTED_AT = datetime(2026, 1, 5, 21, 0, 0, tzinfo=UTC)  # Yahoo's time, long before "now"
YF_HOME_CACHE = Path(platformdirs.user_cache_dir()) / "py-yfinance"


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


@pytest.fixture
def yahoo() -> FakeYahoo:
    return FakeYahoo()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def source(
    yahoo: FakeYahoo, tmp_path: Path, sleeps: list[float] | None = None, **kwargs: float
) -> YFinancePriceSource:
    """A source on the fake, with a recorded (non-sleeping) backoff and a fixed jitter."""
    recorded = sleeps if sleeps is not None else []
    options: dict[str, float] = {"timeout_s": 2.0, "deadline_s": 5.0} | kwargs
    return YFinancePriceSource(
        session_factory=yahoo.session,
        cache_dir=tmp_path / "yfinance",
        sleep=recorded.append,
        jitter=lambda: 0.5,
        **options,  # type: ignore[arg-type]
    )


def fetch(src: YFinancePriceSource, *symbols: str) -> dict[str, PriceResult]:
    return {t.value: r for t, r in src.fetch([Ticker(s) for s in symbols]).items()}


def test_several_tickers_each_get_their_quote_at_yahoos_quote_time(
    yahoo: FakeYahoo, tmp_path: Path
) -> None:
    """Every ticker of a batch gets its own price, stamped with Yahoo's regularMarketTime in UTC."""
    yahoo.add("AAPL", price=212.49, quoted_at=QUOTED_AT)
    yahoo.add("MSFT", price=441.06, quoted_at=datetime(2026, 1, 5, 20, 59, 58, tzinfo=UTC))
    yahoo.add("0700.HK", price=388.2, quoted_at=datetime(2026, 1, 5, 8, 8, 8, tzinfo=UTC))

    results = fetch(source(yahoo, tmp_path), "AAPL", "MSFT", "0700.HK")

    assert results == {
        "AAPL": Quote(Ticker("AAPL"), 212.49, QUOTED_AT),
        "MSFT": Quote(Ticker("MSFT"), 441.06, datetime(2026, 1, 5, 20, 59, 58, tzinfo=UTC)),
        "0700.HK": Quote(Ticker("0700.HK"), 388.2, datetime(2026, 1, 5, 8, 8, 8, tzinfo=UTC)),
    }
    for result in results.values():
        assert isinstance(result, Quote)
        assert type(result.quoted_at) is datetime
        assert result.quoted_at.tzinfo is UTC


def test_one_handshake_then_one_chart_request_per_ticker(yahoo: FakeYahoo, tmp_path: Path) -> None:
    """yfinance gets a cookie and a crumb once, then sends one chart request per ticker."""
    yahoo.add("AAPL")
    yahoo.add("MSFT")
    src = source(yahoo, tmp_path)

    fetch(src, "AAPL", "MSFT")
    fetch(src, "AAPL", "MSFT")

    assert yahoo.urls[:2] == [
        "https://fc.yahoo.com/",
        "https://query1.finance.yahoo.com/v1/test/getcrumb",
    ]
    charts = [u for u in yahoo.urls[2:] if "/v8/finance/chart/" in u]
    assert len(charts) == len(yahoo.urls) - 2 == 4
    assert all("range=5d&interval=1d" in u and "crumb=Fake.Crumb-123" in u for u in charts)
    assert yahoo.hosts() <= {"fc.yahoo.com", "query1.finance.yahoo.com", "query2.finance.yahoo.com"}


def test_an_unknown_symbol_is_an_unknown_ticker(yahoo: FakeYahoo, tmp_path: Path) -> None:
    """Yahoo's 404 "No data found, symbol may be delisted" is the user's mistake, not an outage."""
    yahoo.add("AAPL")
    yahoo.add("NOPE", Behaviour.UNKNOWN)

    results = fetch(source(yahoo, tmp_path), "AAPL", "NOPE")

    assert results["NOPE"] == UnknownTicker(Ticker("NOPE"))
    assert isinstance(results["AAPL"], Quote)


def test_a_rate_limit_is_retried_with_backoff_and_then_quoted(
    yahoo: FakeYahoo, tmp_path: Path, sleeps: list[float]
) -> None:
    """A 429 that yfinance's own second try still gets is retried by us after a backoff."""
    # yfinance answers a 429 by switching cookie strategy and asking once more: two 429s
    # make one failed attempt of ours.
    yahoo.add("AAPL", Behaviour.RATE_LIMITED_THEN_OK, failures=2, price=212.49, quoted_at=QUOTED_AT)

    results = fetch(source(yahoo, tmp_path, sleeps), "AAPL")

    assert results["AAPL"] == Quote(Ticker("AAPL"), 212.49, QUOTED_AT)
    assert yahoo.chart_calls["AAPL"] == 3  # 429, 429 (yfinance's retry), then 200
    assert sleeps == [0.5]  # one backoff: 0.5 s, jitter fixed at its middle


def test_a_persistent_rate_limit_fails_after_a_bounded_number_of_attempts(
    yahoo: FakeYahoo, tmp_path: Path, sleeps: list[float]
) -> None:
    """Always 429: FetchFailed naming the rate limit after 3 attempts and 2 growing backoffs."""
    yahoo.add("AAPL", Behaviour.RATE_LIMITED)

    result = fetch(source(yahoo, tmp_path, sleeps), "AAPL")["AAPL"]

    assert isinstance(result, FetchFailed)
    assert "rate limited" in result.reason
    assert "3 attempts" in result.reason
    assert yahoo.chart_calls["AAPL"] == 6  # 3 attempts of ours, each asked twice by yfinance
    assert sleeps == [0.5, 1.0]


def test_the_backoff_is_jittered_around_the_exponential_delay(
    yahoo: FakeYahoo, tmp_path: Path
) -> None:
    """Backoffs stay within +-25% of 0.5 s then 1 s, so that clients do not retry in step."""
    yahoo.add("AAPL", Behaviour.RATE_LIMITED)
    for jitter, expected in ((0.0, [0.375, 0.75]), (0.999, [0.62475, 1.2495])):
        sleeps: list[float] = []
        src = YFinancePriceSource(
            session_factory=yahoo.session,
            cache_dir=tmp_path / "yfinance",
            sleep=sleeps.append,
            jitter=lambda j=jitter: j,
        )
        fetch(src, "AAPL")
        assert sleeps == pytest.approx(expected)


def test_a_refused_connection_is_retried_then_fails(
    yahoo: FakeYahoo, tmp_path: Path, sleeps: list[float]
) -> None:
    """A network error gets the same bounded retries, then FetchFailed saying so."""
    yahoo.add("AAPL", Behaviour.CONNECTION_ERROR)

    result = fetch(source(yahoo, tmp_path, sleeps), "AAPL")["AAPL"]

    assert isinstance(result, FetchFailed)
    assert result.reason.startswith("network error")
    assert yahoo.chart_calls["AAPL"] == 3
    assert len(sleeps) == 2


def test_a_slow_server_times_out_within_the_request_timeout(
    yahoo: FakeYahoo, tmp_path: Path
) -> None:
    """A server slower than timeout_s: FetchFailed("timeout ...") about timeout_s later."""
    yahoo.add("AAPL")
    yahoo.add("SLOW", Behaviour.SLOW, delay_s=30.0)
    src = source(yahoo, tmp_path, timeout_s=0.3)
    fetch(src, "AAPL")  # the cookie/crumb handshake is not what this test times

    started = time.monotonic()
    results = fetch(src, "AAPL", "SLOW")
    elapsed = time.monotonic() - started

    slow = results["SLOW"]
    assert isinstance(slow, FetchFailed)
    assert slow.reason.startswith("timeout after 0.3 s")
    assert isinstance(results["AAPL"], Quote)
    assert yahoo.chart_calls["SLOW"] == 1  # a timeout is not retried: the batch has a budget
    assert 0.3 <= elapsed < 1.0


def test_the_batch_deadline_bounds_the_whole_call(yahoo: FakeYahoo, tmp_path: Path) -> None:
    """Tickers still unanswered at the deadline are FetchFailed("timeout ..."); fetch returns."""
    yahoo.add("AAPL")
    yahoo.add("SLOW", Behaviour.SLOW, delay_s=1.5)
    src = source(yahoo, tmp_path, timeout_s=10.0, deadline_s=0.5)
    fetch(src, "AAPL")

    started = time.monotonic()
    results = fetch(src, "AAPL", "SLOW")
    elapsed = time.monotonic() - started

    assert results["SLOW"] == FetchFailed(
        Ticker("SLOW"), "timeout: no answer within the batch deadline of 0.5 s"
    )
    assert isinstance(results["AAPL"], Quote)
    assert 0.5 <= elapsed < 1.0


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        (Behaviour.MALFORMED, "malformed answer"),
        (Behaviour.TRUNCATED, "malformed answer"),
        (Behaviour.ZERO_PRICE, "unusable price from Yahoo: 0.0"),
    ],
)
def test_an_unusable_answer_fails_that_ticker_only(
    yahoo: FakeYahoo, tmp_path: Path, sleeps: list[float], behaviour: Behaviour, words: str
) -> None:
    """HTML, truncated JSON or a zero price: FetchFailed for that ticker, without retrying."""
    yahoo.add("AAPL")
    yahoo.add("BAD", behaviour)

    results = fetch(source(yahoo, tmp_path, sleeps), "AAPL", "BAD")

    bad = results["BAD"]
    assert isinstance(bad, FetchFailed)
    assert words in bad.reason
    assert isinstance(results["AAPL"], Quote)
    assert yahoo.chart_calls["BAD"] == 1
    assert sleeps == []


def test_no_exception_escapes_fetch(yahoo: FakeYahoo, tmp_path: Path) -> None:
    """A broken session factory or transport turns into FetchFailed, never into an exception."""

    def no_session() -> requests.Session:
        raise RuntimeError("no network stack today")

    broken = YFinancePriceSource(session_factory=no_session, cache_dir=tmp_path / "yf")
    assert fetch(broken, "AAPL") == {
        "AAPL": FetchFailed(Ticker("AAPL"), "price source error: no network stack today")
    }

    class Exploding(FakeYahoo):
        def _chart(self, *args: object, **kwargs: object) -> requests.Response:
            raise RuntimeError("transport bug")

    exploding = Exploding()
    result = fetch(source(exploding, tmp_path), "AAPL")["AAPL"]
    assert isinstance(result, FetchFailed)
    assert "transport bug" in result.reason


def test_one_result_per_requested_ticker(yahoo: FakeYahoo, tmp_path: Path) -> None:
    """Mixed outcomes, duplicates and an empty batch: exactly the requested tickers come back."""
    yahoo.add("AAPL")
    yahoo.add("RATE", Behaviour.RATE_LIMITED)
    yahoo.add("HTML", Behaviour.MALFORMED)
    yahoo.add("ZERO", Behaviour.ZERO_PRICE)
    wanted = [Ticker(s) for s in ("AAPL", "NOPE", "RATE", "HTML", "ZERO", "AAPL")]
    src = source(yahoo, tmp_path)

    results = src.fetch(wanted)

    assert list(results) == [Ticker(s) for s in ("AAPL", "NOPE", "RATE", "HTML", "ZERO")]
    assert all(r.ticker == t for t, r in results.items())
    assert src.fetch([]) == {}


def test_yfinance_caches_live_in_the_given_folder_only(yahoo: FakeYahoo, tmp_path: Path) -> None:
    """The tz, cookie and ISIN caches point at cache_dir; nothing goes to ~/.cache/py-yfinance."""
    before = sorted(YF_HOME_CACHE.iterdir()) if YF_HOME_CACHE.exists() else None
    yahoo.add("AAPL")
    cache_dir = tmp_path / "state" / "yfinance"

    result = fetch(source(yahoo, tmp_path / "state"), "AAPL")["AAPL"]

    assert isinstance(result, Quote)
    assert yf_cache._TzDBManager.get_location() == str(cache_dir)
    assert yf_cache._CookieDBManager.get_location() == str(cache_dir)
    assert yf_cache._ISINDBManager.get_location() == str(cache_dir)
    assert (cache_dir / "cookies.db").is_file()  # the A3 cookie yfinance keeps
    after = sorted(YF_HOME_CACHE.iterdir()) if YF_HOME_CACHE.exists() else None
    assert after == before


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_starts_with_a_fresh_yfinance_singleton(
    yahoo: FakeYahoo, tmp_path: Path, run: int
) -> None:
    """The fixture resets yfinance's singleton: every run does the cookie/crumb handshake."""
    yahoo.add("AAPL")

    assert isinstance(fetch(source(yahoo, tmp_path), "AAPL")["AAPL"], Quote)

    assert yahoo.urls[0] == "https://fc.yahoo.com/"
    assert YfData()._session.get_adapter("https://query2.finance.yahoo.com") is yahoo

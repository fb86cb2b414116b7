"""The yfinance quote-scraper price source against an offline fake of Yahoo (nothing leaves)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import platformdirs
import pytest
import requests
from yfinance import cache as yf_cache
from yfinance.data import YfData

from stockalert.adapters.yfinance_quote_source import YFinanceQuotePriceSource
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.ports import FetchFailed, PriceResult, UnknownTicker
from tests.unit.test_yfinance_source import isolated_yfinance  # noqa: F401  # autouse fixture
from tests.unit.yahoo_fake import Behaviour
from tests.unit.yahoo_fake_quote import FakeYahooQuote

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:yfinance")

QUOTED_AT = datetime(2026, 1, 5, 21, 0, 0, tzinfo=UTC)  # Yahoo's time, long before "now"
YF_HOME_CACHE = Path(platformdirs.user_cache_dir()) / "py-yfinance"
QUOTE_PATHS = ("/v10/finance/quoteSummary/", "/v7/finance/quote")


@pytest.fixture
def yahoo() -> FakeYahooQuote:
    return FakeYahooQuote()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def source(
    yahoo: FakeYahooQuote, tmp_path: Path, sleeps: list[float] | None = None, **kwargs: float
) -> YFinanceQuotePriceSource:
    """A source on the fake, with a recorded (non-sleeping) backoff and a fixed jitter."""
    recorded = sleeps if sleeps is not None else []
    options: dict[str, float] = {"timeout_s": 2.0, "deadline_s": 5.0} | kwargs
    return YFinanceQuotePriceSource(
        session_factory=yahoo.session,
        cache_dir=tmp_path / "yfinance",
        sleep=recorded.append,
        jitter=lambda: 0.5,
        **options,  # type: ignore[arg-type]
    )


def fetch(src: YFinanceQuotePriceSource, *symbols: str) -> dict[str, PriceResult]:
    return {t.value: r for t, r in src.fetch([Ticker(s) for s in symbols]).items()}


def test_several_tickers_each_get_their_quote_at_yahoos_quote_time(
    yahoo: FakeYahooQuote, tmp_path: Path
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


def test_one_handshake_then_two_quote_requests_per_ticker(
    yahoo: FakeYahooQuote, tmp_path: Path
) -> None:
    """A cookie and a crumb once, then quoteSummary and v7 quote per ticker; no chart."""
    yahoo.add("AAPL")
    yahoo.add("MSFT")
    src = source(yahoo, tmp_path)

    fetch(src, "AAPL", "MSFT")
    fetch(src, "AAPL", "MSFT")

    assert yahoo.urls[:2] == [
        "https://fc.yahoo.com/",
        "https://query1.finance.yahoo.com/v1/test/getcrumb",
    ]
    rest = yahoo.urls[2:]
    assert len(rest) == 8
    assert all(any(p in u for p in QUOTE_PATHS) and "crumb=Fake.Crumb-123" in u for u in rest)
    assert all("formatted=false" in u for u in rest)
    assert yahoo.quote_calls == {"AAPL": 4, "MSFT": 4}
    assert not yahoo.chart_calls
    assert yahoo.hosts() <= {"fc.yahoo.com", "query1.finance.yahoo.com", "query2.finance.yahoo.com"}


def test_an_unknown_symbol_is_an_unknown_ticker(yahoo: FakeYahooQuote, tmp_path: Path) -> None:
    """Yahoo's 404 "Quote not found for symbol" is the user's mistake, not an outage."""
    yahoo.add("AAPL")
    yahoo.add("NOPE", Behaviour.UNKNOWN)

    results = fetch(source(yahoo, tmp_path), "AAPL", "NOPE")

    assert results["NOPE"] == UnknownTicker(Ticker("NOPE"))
    assert isinstance(results["AAPL"], Quote)


def test_a_rate_limit_is_retried_with_backoff_and_then_quoted(
    yahoo: FakeYahooQuote, tmp_path: Path, sleeps: list[float]
) -> None:
    """A 429 that yfinance's own second try still gets is retried by us after a backoff."""
    yahoo.add("AAPL", Behaviour.RATE_LIMITED_THEN_OK, failures=2, price=212.49, quoted_at=QUOTED_AT)

    results = fetch(source(yahoo, tmp_path, sleeps), "AAPL")

    assert results["AAPL"] == Quote(Ticker("AAPL"), 212.49, QUOTED_AT)
    assert yahoo.quote_calls["AAPL"] == 4  # 429, 429 (yfinance's retry), then 200 + 200
    assert sleeps == [0.5]


def test_a_persistent_rate_limit_fails_after_a_bounded_number_of_attempts(
    yahoo: FakeYahooQuote, tmp_path: Path, sleeps: list[float]
) -> None:
    """Always 429: FetchFailed naming the rate limit after 3 attempts and 2 growing backoffs."""
    yahoo.add("AAPL", Behaviour.RATE_LIMITED)

    result = fetch(source(yahoo, tmp_path, sleeps), "AAPL")["AAPL"]

    assert isinstance(result, FetchFailed)
    assert "rate limited" in result.reason
    assert "3 attempts" in result.reason
    assert yahoo.quote_calls["AAPL"] == 6  # 3 attempts of ours, each asked twice by yfinance
    assert sleeps == [0.5, 1.0]


def test_a_refused_connection_is_retried_then_fails(
    yahoo: FakeYahooQuote, tmp_path: Path, sleeps: list[float]
) -> None:
    """A network error gets the same bounded retries, then FetchFailed saying so."""
    yahoo.add("AAPL", Behaviour.CONNECTION_ERROR)

    result = fetch(source(yahoo, tmp_path, sleeps), "AAPL")["AAPL"]

    assert isinstance(result, FetchFailed)
    assert result.reason.startswith("network error")
    assert yahoo.quote_calls["AAPL"] == 3
    assert len(sleeps) == 2


def test_a_slow_server_times_out_within_the_request_timeout(
    yahoo: FakeYahooQuote, tmp_path: Path
) -> None:
    """Slower than timeout_s (yfinance asks with 30 s): FetchFailed about timeout_s later."""
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
    assert yahoo.quote_calls["SLOW"] == 1  # a timeout is not retried: the batch has a budget
    assert 0.3 <= elapsed < 1.0


def test_the_batch_deadline_bounds_the_whole_call(yahoo: FakeYahooQuote, tmp_path: Path) -> None:
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
    yahoo: FakeYahooQuote, tmp_path: Path, sleeps: list[float], behaviour: Behaviour, words: str
) -> None:
    """HTML, truncated JSON or a zero price: FetchFailed for that ticker, without retrying."""
    yahoo.add("AAPL")
    yahoo.add("BAD", behaviour)

    results = fetch(source(yahoo, tmp_path, sleeps), "AAPL", "BAD")

    bad = results["BAD"]
    assert isinstance(bad, FetchFailed)
    assert words in bad.reason
    assert isinstance(results["AAPL"], Quote)
    assert 1 <= yahoo.quote_calls["BAD"] <= 2  # one attempt: quoteSummary (+ v7 quote)
    assert sleeps == []


def test_an_empty_quote_answer_is_malformed(yahoo: FakeYahooQuote, tmp_path: Path) -> None:
    """quoteSummary answers but v7 quote has no result: no price, so FetchFailed."""

    class NoQuote(FakeYahooQuote):
        def _quote_route(
            self, request: requests.PreparedRequest, symbol: str, *args: object, summary: bool
        ) -> requests.Response:
            if summary:
                return super()._quote_route(request, symbol, None, summary=True)
            return super()._quote_route(request, "UNKNOWN-" + symbol, None, summary=False)

    empty = NoQuote()
    empty.add("AAPL")

    result = fetch(source(empty, tmp_path), "AAPL")["AAPL"]

    assert isinstance(result, FetchFailed)
    assert "malformed answer from Yahoo: regularMarketPrice=None" in result.reason


def test_no_exception_escapes_fetch(yahoo: FakeYahooQuote, tmp_path: Path) -> None:
    """A broken session factory or transport turns into FetchFailed, never into an exception."""

    def no_session() -> requests.Session:
        raise RuntimeError("no network stack today")

    broken = YFinanceQuotePriceSource(session_factory=no_session, cache_dir=tmp_path / "yf")
    assert fetch(broken, "AAPL") == {
        "AAPL": FetchFailed(Ticker("AAPL"), "price source error: no network stack today")
    }

    class Exploding(FakeYahooQuote):
        def _quote_route(self, *args: object, **kwargs: object) -> requests.Response:
            raise RuntimeError("transport bug")

    exploding = Exploding()
    result = fetch(source(exploding, tmp_path), "AAPL")["AAPL"]
    assert isinstance(result, FetchFailed)
    assert "transport bug" in result.reason


def test_one_result_per_requested_ticker(yahoo: FakeYahooQuote, tmp_path: Path) -> None:
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
    assert results[Ticker("NOPE")] == UnknownTicker(Ticker("NOPE"))
    assert src.fetch([]) == {}


def test_yfinance_caches_live_in_the_given_folder_only(
    yahoo: FakeYahooQuote, tmp_path: Path
) -> None:
    """The tz, cookie and ISIN caches point at cache_dir; nothing goes to ~/.cache/py-yfinance."""
    before = sorted(YF_HOME_CACHE.iterdir()) if YF_HOME_CACHE.exists() else None
    yahoo.add("AAPL")
    cache_dir = tmp_path / "state" / "yfinance"

    result = fetch(source(yahoo, tmp_path / "state"), "AAPL")["AAPL"]

    assert isinstance(result, Quote)
    assert yf_cache._TzDBManager.get_location() == str(cache_dir)
    assert yf_cache._CookieDBManager.get_location() == str(cache_dir)
    assert yf_cache._ISINDBManager.get_location() == str(cache_dir)
    assert (cache_dir / "cookies.db").is_file()
    after = sorted(YF_HOME_CACHE.iterdir()) if YF_HOME_CACHE.exists() else None
    assert after == before
    assert YfData()._session.get_adapter("https://query2.finance.yahoo.com") is yahoo

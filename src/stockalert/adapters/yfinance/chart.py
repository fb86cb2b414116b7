"""PriceSource port over Yahoo Finance, through yfinance.

What yfinance 1.7 sends for one ticker (`PriceHistory.history(period, interval)`, the object
`Ticker.history` delegates to):

* once per process, the cookie/crumb handshake: GET https://fc.yahoo.com (sets the A3 cookie,
  kept in yfinance's cookie cache `cookies.db`), then GET
  https://query1.finance.yahoo.com/v1/test/getcrumb;
* GET https://query2.finance.yahoo.com/v8/finance/chart/SYMBOL?range=...&interval=...
  &includePrePost=False&events=div,splits,capitalGains&crumb=...;
* on any answer >= 400 (404 unknown symbol, 429, 401), yfinance switches its cookie strategy
  (basic <-> csrf), fetches a new crumb and sends the chart request once more; a second 429
  raises YFRateLimitError.

`Ticker.history` would first look the exchange time zone up (tz cache `tkr-tz.db`, and on a
miss an extra chart request with a fixed 10 s timeout whose answer stays in a process-wide
LRU cache) and, for a symbol without one, fall back to `Ticker.info` (quoteSummary and
v7/quote requests that end in a bare HTTP 404 error rather than yfinance's "no data"
error). A period-based history never needs that time zone: the chart answer carries
`exchangeTimezoneName`. So this adapter builds the `PriceHistory` itself, without a time
zone: one chart request per ticker, parsed by yfinance's own code, and the quote is read
from the parsed history metadata (`regularMarketPrice`, `regularMarketTime`: the time
Yahoo quoted the price, not the time we fetched it).

yfinance keeps process-wide state: the `YfData` singleton (session, cookie, crumb), its
config and the cache folder. The constructor points the caches at `cache_dir` and turns
yfinance's "log and return an empty frame" into exceptions, which this adapter classifies.
"""

from __future__ import annotations

from typing import Any

from yfinance.exceptions import (
    YFException,
    YFPricesMissingError,
    YFRateLimitError,
    YFTickerMissingError,
)
from yfinance.scrapers.history import PriceHistory

from stockalert.adapters.yfinance.batch import (
    NOT_FOUND_WORDS,
    Retryable,
    YahooBatchSource,
    describe,
    is_timeout,
    quote_result,
)
from stockalert.domain.model import Ticker
from stockalert.domain.ports import FetchFailed, PriceResult, UnknownTicker


class YFinanceChartSource(YahooBatchSource):
    """PriceSource port over Yahoo's chart API: one request per ticker, parsed by yfinance
    into pandas frames (several ms of CPU per ticker). The fallback source.

    `period`/`interval`: "5d"/"1d" is what yfinance itself uses for metadata and always holds
    a bar, even after a weekend or a holiday. Other options: `YahooBatchSource`.
    """

    def __init__(self, *, period: str = "5d", interval: str = "1d", **options: Any) -> None:
        super().__init__(**options)
        self._period = period
        self._interval = interval

    def _attempt(self, data: Any, session: Any, ticker: Ticker) -> PriceResult:
        # tz=None: a period-based history reads the zone from the answer (see the docstring).
        history = PriceHistory(data, ticker.value, None, session=session)
        try:
            # Only the metadata is read: skipping the action columns, the price adjustment
            # and the NaN clean-up halves the CPU yfinance spends per ticker.
            history.history(
                period=self._period,
                interval=self._interval,
                actions=False,
                auto_adjust=False,
                keepna=True,
                timeout=self._timeout_s,
            )
            meta = history.get_history_metadata()
            price = meta.get("regularMarketPrice")
            quoted_at = meta.get("regularMarketTime")
        except YFRateLimitError as err:
            raise Retryable("rate limited by Yahoo (HTTP 429)") from err
        except YFPricesMissingError as err:
            reason = err.yahoo_reason
            if reason is not None and any(w in reason.lower() for w in NOT_FOUND_WORDS):
                return UnknownTicker(ticker)
            return FetchFailed(ticker, f"no price data: {describe(err)}")
        except YFTickerMissingError as err:
            return FetchFailed(ticker, f"no price data: {describe(err)}")
        except YFException as err:  # e.g. "Yahoo! Finance is currently down"
            return FetchFailed(ticker, f"yfinance: {describe(err)}")
        except Exception as err:
            if is_timeout(err):
                return FetchFailed(ticker, f"timeout after {self._timeout_s:g} s: {describe(err)}")
            if isinstance(err, ValueError | KeyError | IndexError | TypeError):
                # ValueError first: requests' JSONDecodeError is also an OSError.
                return FetchFailed(ticker, f"malformed answer from Yahoo: {describe(err)}")
            if isinstance(err, OSError):
                raise Retryable(f"network error: {describe(err)}") from err
            raise
        return quote_result(ticker, price, quoted_at)

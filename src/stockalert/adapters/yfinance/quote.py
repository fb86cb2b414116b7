"""PriceSource port over Yahoo Finance through yfinance's quote scraper (no pandas frames).

The chart adapter (`chart.py`) parses a chart answer into pandas frames: ~10 ms of CPU per ticker,
under the GIL, which bounds a cycle of hundreds of tickers whatever the number of threads.
This adapter asks yfinance's `Quote` scraper (`yfinance.scrapers.quote.Quote`, what
`Ticker.info` delegates to) instead: its `_fetch_info` sends, per ticker,

* GET https://query2.finance.yahoo.com/v10/finance/quoteSummary/SYMBOL?modules=financialData,
  quoteType,defaultKeyStatistics,assetProfile,summaryDetail&formatted=false&crumb=...;
* GET https://query1.finance.yahoo.com/v7/finance/quote?symbols=SYMBOL&formatted=false&crumb=...;

and merges, flattens and formats both answers into the `info` dict with plain dict code
(~1 ms of CPU per ticker). `Ticker.info` would add a third request (fundamentals-timeseries,
for the trailing PEG ratio) that a price does not need, so the scraper's `_fetch_info` is
called directly. The quote is `info["regularMarketPrice"]` and `info["regularMarketTime"]`
(epoch seconds: the time Yahoo quoted the price). yfinance 1.7 has no public function that
asks the v7 endpoint for several symbols in one request (`Quote` keeps only the first result).

Yahoo's answers for an unknown symbol: quoteSummary 404 "Quote not found for symbol", v7 an
empty result. The 404 reaches us as `requests.HTTPError` (after yfinance's retry with its
other cookie strategy), since `hide_exceptions` is off. The scraper sends its requests with a
fixed 30 s timeout: the session this adapter hands to yfinance caps every request at
`timeout_s`. Retries, backoff, batch deadline, threads and caches are those of
`YahooBatchSource` (`batch.py`).
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from typing import Any

import requests
from yfinance.exceptions import (
    YFException,
    YFRateLimitError,
)
from yfinance.scrapers.quote import Quote as YfQuote

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


class YFinanceQuoteSource(YahooBatchSource):
    """PriceSource port: like the chart source, but over yfinance's quote scraper.

    Same constructor, outcomes and guarantees (Quote / UnknownTicker / FetchFailed per ticker,
    bounded retries of 429s and refused connections, per-request timeout, batch deadline,
    `fetch` never raises). Two HTTP requests per ticker instead of one, but about a tenth of
    the CPU, so that many threads actually overlap their waits.
    """

    def _yf_data(self) -> tuple[Any, Any]:
        data, session = super()._yf_data()
        with self._session_lock:
            if not getattr(session, "_stockalert_capped", False):
                # yfinance's scraper asks with timeout=30: cap every request at timeout_s.
                session.get = functools.partial(_capped_get, session.get, self._timeout_s)
                session._stockalert_capped = True
        return data, session

    def _attempt(self, data: Any, session: Any, ticker: Ticker) -> PriceResult:
        scraper = YfQuote(data, ticker.value)
        try:
            scraper._fetch_info()
            info = scraper._info or {}
            price = info.get("regularMarketPrice")
            quoted_at = info.get("regularMarketTime")
        except YFRateLimitError as err:
            raise Retryable("rate limited by Yahoo (HTTP 429)") from err
        except requests.HTTPError as err:
            return self._http_error(ticker, err)
        except YFException as err:  # e.g. "Yahoo! Finance is currently down"
            return FetchFailed(ticker, f"yfinance: {describe(err)}")
        except Exception as err:
            if is_timeout(err):
                return FetchFailed(ticker, f"timeout after {self._timeout_s:g} s: {describe(err)}")
            if isinstance(err, ValueError | KeyError | IndexError | TypeError | AttributeError):
                # ValueError first: requests' JSONDecodeError is also an OSError.
                return FetchFailed(ticker, f"malformed answer from Yahoo: {describe(err)}")
            if isinstance(err, OSError):
                raise Retryable(f"network error: {describe(err)}") from err
            raise
        return quote_result(ticker, price, _epoch_to_utc(quoted_at))

    @staticmethod
    def _http_error(ticker: Ticker, err: requests.HTTPError) -> PriceResult:
        response = err.response
        status = response.status_code if response is not None else None
        body = response.text if response is not None else ""
        if status == 404 and any(w in body.lower() for w in NOT_FOUND_WORDS):
            return UnknownTicker(ticker)
        if status == 429:
            raise Retryable("rate limited by Yahoo (HTTP 429)") from err
        if status is not None and status >= 500:
            raise Retryable(f"Yahoo server error (HTTP {status})") from err
        return FetchFailed(ticker, f"Yahoo answered HTTP {status}: {describe(err)}")


def _capped_get(get: Any, limit: float, url: str, **kwargs: Any) -> Any:
    timeout = kwargs.get("timeout")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout > limit:
        kwargs["timeout"] = limit
    return get(url, **kwargs)


def _epoch_to_utc(value: object) -> object:
    """Yahoo's regularMarketTime (epoch seconds with formatted=false) as an aware UTC time."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return value  # left as is: `_quote` reports it as malformed
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return value

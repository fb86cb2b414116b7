"""The offline Yahoo of yahoo_fake.py, extended with the quote endpoints yfinance's Quote uses.

`FakeYahooQuote` answers, per symbol and with the same behaviours as the chart endpoint:

* GET /v10/finance/quoteSummary/SYMBOL (the modules `Quote.info` asks for), 404 "Quote not
  found for symbol" for an unknown symbol, as Yahoo does;
* GET /v7/finance/quote?symbols=SYMBOL with `regularMarketPrice` and `regularMarketTime`
  (epoch seconds, since yfinance asks with formatted=false), an empty result for an unknown
  symbol, as Yahoo does;
* GET /ws/fundamentals-timeseries/... (the trailing PEG ratio `Ticker.info` adds).

`quote_calls` counts the quoteSummary and v7 quote requests per symbol.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests

from tests.unit.yahoo_fake import (
    QUOTE_SUMMARY_NOT_FOUND,
    Behaviour,
    FakeSymbol,
    FakeYahoo,
    _response,
)

TIMESERIES_EMPTY = {"timeseries": {"result": [], "error": None}}


def quote_summary_json(symbol: str, price: float) -> dict[str, Any]:
    """A quoteSummary answer with the modules yfinance's `Quote.info` requests."""
    return {
        "quoteSummary": {
            "result": [
                {
                    "quoteType": {
                        "exchange": "NMS",
                        "quoteType": "EQUITY",
                        "symbol": symbol,
                        "shortName": f"{symbol} Inc.",
                        "longName": f"{symbol} Inc.",
                        "timeZoneFullName": "America/New_York",
                        "timeZoneShortName": "EST",
                        "maxAge": 1,
                    },
                    "summaryDetail": {
                        "previousClose": round(price * 0.995, 2),
                        "open": round(price * 0.998, 2),
                        "dayLow": round(price * 0.99, 2),
                        "dayHigh": round(price * 1.01, 2),
                        "currency": "USD",
                        "maxAge": 1,
                    },
                    "financialData": {"currentPrice": price, "financialCurrency": "USD"},
                    "defaultKeyStatistics": {"sharesOutstanding": 1000000},
                    "assetProfile": {"sector": "Technology", "country": "United States"},
                }
            ],
            "error": None,
        }
    }


def v7_quote_json(symbol: str, price: float, quoted_at: int) -> dict[str, Any]:
    """A v7/finance/quote answer (formatted=false) for one symbol."""
    return {
        "quoteResponse": {
            "result": [
                {
                    "language": "en-US",
                    "region": "US",
                    "quoteType": "EQUITY",
                    "typeDisp": "Equity",
                    "quoteSourceName": "Nasdaq Real Time Price",
                    "triggerable": True,
                    "currency": "USD",
                    "exchange": "NMS",
                    "shortName": f"{symbol} Inc.",
                    "longName": f"{symbol} Inc.",
                    "marketState": "CLOSED",
                    "regularMarketPrice": price,
                    "regularMarketTime": quoted_at,
                    "regularMarketChange": round(price * 0.005, 4),
                    "regularMarketPreviousClose": round(price * 0.995, 2),
                    "regularMarketVolume": 41234567,
                    "exchangeTimezoneName": "America/New_York",
                    "exchangeTimezoneShortName": "EST",
                    "gmtOffSetMilliseconds": -18000000,
                    "market": "us_market",
                    "esgPopulated": False,
                    "priceHint": 2,
                    "symbol": symbol,
                }
            ],
            "error": None,
        }
    }


class FakeYahooQuote(FakeYahoo):
    """FakeYahoo that also answers quoteSummary, v7 quote and fundamentals-timeseries."""

    def __init__(self, latency_s: float = 0.0, default: FakeSymbol | None = None) -> None:
        super().__init__(latency_s, default)
        self.quote_calls: Counter[str] = Counter()

    def send(  # type: ignore[override]  # requests' signature, keyword defaults as HTTPAdapter
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        parts = urlsplit(request.url or "")
        path = parts.path
        if path.startswith("/v10/finance/quoteSummary/"):
            symbol = unquote(path.rsplit("/", 1)[1])
            return self._quote_route(request, symbol, timeout, summary=True)
        if path.startswith("/v7/finance/quote"):
            symbol = parse_qs(parts.query).get("symbols", [""])[-1]
            return self._quote_route(request, symbol, timeout, summary=False)
        if path.startswith("/ws/fundamentals-timeseries/"):
            self._record(request)
            return _response(request, 200, TIMESERIES_EMPTY)
        return super().send(request, stream, timeout, verify, cert, proxies)

    def _record(self, request: requests.PreparedRequest) -> None:
        with self._lock:
            self.urls.append(request.url or "")
        if self.latency_s:
            time.sleep(self.latency_s)

    def _quote_route(
        self,
        request: requests.PreparedRequest,
        symbol: str,
        timeout: float | tuple[float, float] | None,
        *,
        summary: bool,
    ) -> requests.Response:
        self._record(request)
        with self._lock:
            self.quote_calls[symbol] += 1
            calls = self.quote_calls[symbol]
        fake = self.symbols.get(symbol, self.default)
        if fake is None or fake.behaviour is Behaviour.UNKNOWN:
            if summary:
                body = json.dumps(QUOTE_SUMMARY_NOT_FOUND).replace("symbol", f"symbol: {symbol}")
                return _response(request, 404, body)
            return _response(request, 200, {"quoteResponse": {"result": [], "error": None}})
        behaviour = fake.behaviour
        if behaviour is Behaviour.RATE_LIMITED or (
            behaviour is Behaviour.RATE_LIMITED_THEN_OK and calls <= fake.failures
        ):
            return _response(request, 429, "Too Many Requests\r\n", content_type="text/plain")
        if behaviour is Behaviour.CONNECTION_ERROR:
            raise requests.ConnectionError(f"fake: connection refused for {symbol}")
        if behaviour is Behaviour.SLOW:
            read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
            if read_timeout is not None and read_timeout < fake.delay_s:
                time.sleep(read_timeout)
                raise requests.ReadTimeout(f"fake: read timed out after {read_timeout} s")
            time.sleep(fake.delay_s)
        if behaviour is Behaviour.MALFORMED:
            return _response(request, 200, "<html>oops", content_type="text/html")
        price = 0.0 if behaviour is Behaviour.ZERO_PRICE else fake.price
        if summary:
            body = quote_summary_json(symbol, price)
        else:
            body = v7_quote_json(symbol, price, int(fake.quoted_at.timestamp()))
        if behaviour is Behaviour.TRUNCATED:
            return _response(request, 200, json.dumps(body)[:200])
        return _response(request, 200, body)

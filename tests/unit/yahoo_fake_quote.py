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
from collections import Counter
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote

import requests

from tests.unit.yahoo_fake import (
    QUOTE_NOT_FOUND,
    QUOTE_SUMMARY_NOT_FOUND,
    FakeSymbol,
    FakeYahoo,
    Timeout,
    _response,
)

TIMESERIES_EMPTY: dict[str, Any] = {"timeseries": {"result": [], "error": None}}


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

    def _route(
        self, request: requests.PreparedRequest, parts: SplitResult, timeout: Timeout
    ) -> requests.Response:
        path = parts.path
        if path.startswith("/v10/finance/quoteSummary/"):
            symbol = unquote(path.rsplit("/", 1)[1])
            return self._quote_route(request, symbol, timeout, summary=True)
        if path.startswith("/v7/finance/quote"):
            symbol = parse_qs(parts.query).get("symbols", [""])[-1]
            return self._quote_route(request, symbol, timeout, summary=False)
        if path.startswith("/ws/fundamentals-timeseries/"):
            return _response(request, 200, TIMESERIES_EMPTY)
        return super()._route(request, parts, timeout)

    def _quote_route(
        self, request: requests.PreparedRequest, symbol: str, timeout: Timeout, *, summary: bool
    ) -> requests.Response:
        calls = self._count(self.quote_calls, symbol)

        def not_found() -> requests.Response:
            if summary:  # a 404 naming the symbol
                text = json.dumps(QUOTE_SUMMARY_NOT_FOUND).replace("symbol", f"symbol: {symbol}")
                return _response(request, 404, text)
            return _response(request, 200, QUOTE_NOT_FOUND)  # an empty result

        def body(fake: FakeSymbol, price: float) -> dict[str, Any]:
            if summary:
                return quote_summary_json(symbol, price)
            return v7_quote_json(symbol, price, int(fake.quoted_at.timestamp()))

        return self._answer(request, symbol, calls, timeout, not_found=not_found, body=body)

"""What only the quote adapter (`YFinanceQuoteSource`) does, against an offline fake Yahoo.

The price-source contract it shares with the chart adapter, the cookie/crumb handshake and
the number of requests per ticker included, is in test_yfinance_sources.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from stockalert.domain.ports import FetchFailed
from tests.unit.yahoo_fake import CRUMB
from tests.unit.yahoo_fake_quote import FakeYahooQuote
from tests.unit.yfinance_harness import (  # noqa: F401  # isolated_yfinance: autouse fixture
    QUOTE,
    fetch,
    fetched_twice,
    isolated_yfinance,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:yfinance")


def test_a_ticker_is_a_quote_summary_and_a_v7_quote_request(tmp_path: Path) -> None:
    """After the handshake, a ticker is quoteSummary and v7 quote, unformatted; no chart."""
    yahoo = fetched_twice(QUOTE, tmp_path)

    quotes = [urlsplit(u) for u in yahoo.urls[2:]]
    assert Counter(u.path for u in quotes) == {
        "/v10/finance/quoteSummary/AAPL": 2,
        "/v10/finance/quoteSummary/MSFT": 2,
        "/v7/finance/quote": 4,
    }
    queries = [parse_qs(u.query) for u in quotes]
    assert Counter(s for q in queries for s in q.get("symbols", [])) == {"AAPL": 2, "MSFT": 2}
    assert all(q["crumb"] == [CRUMB] and q["formatted"] == ["false"] for q in queries)
    assert not yahoo.chart_calls


def test_an_empty_quote_answer_is_malformed(tmp_path: Path) -> None:
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

    result = fetch(QUOTE.source(empty, tmp_path), "AAPL")["AAPL"]

    assert isinstance(result, FetchFailed)
    assert "malformed answer from Yahoo: regularMarketPrice=None" in result.reason

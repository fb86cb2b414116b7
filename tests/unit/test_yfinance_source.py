"""What only the chart adapter (`YFinanceChartSource`) does, against an offline fake Yahoo.

The price-source contract it shares with the quote adapter, the cookie/crumb handshake and
the number of requests per ticker included, is in test_yfinance_sources.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.unit.yahoo_fake import CRUMB
from tests.unit.yfinance_harness import (  # noqa: F401  # isolated_yfinance: autouse fixture
    CHART,
    fetched_twice,
    isolated_yfinance,
)

# yfinance's own code triggers pandas 3 deprecation notices on every call.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:yfinance")


def test_a_ticker_is_one_chart_request_for_five_daily_bars(tmp_path: Path) -> None:
    """After the handshake, a ticker is one chart request: range=5d, interval=1d, the crumb."""
    charts = fetched_twice(CHART, tmp_path).urls[2:]

    assert Counter(urlsplit(u).path for u in charts) == {
        "/v8/finance/chart/AAPL": 2,
        "/v8/finance/chart/MSFT": 2,
    }
    assert all("range=5d&interval=1d" in u for u in charts)
    assert all(parse_qs(urlsplit(u).query)["crumb"] == [CRUMB] for u in charts)

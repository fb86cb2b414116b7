"""An offline Yahoo Finance: a requests transport adapter serving recorded-style answers.

Mounted on a `requests.Session` for https:// and http://, it answers the requests yfinance
makes: the cookie (fc.yahoo.com), the crumb (/v1/test/getcrumb), the consent page (the
fallback cookie strategy) and the chart endpoint (/v8/finance/chart/SYMBOL), whose JSON is
built by `chart_json` with every `meta` field yfinance reads. Each symbol has a behaviour
(ok, unknown, rate limited, slow, malformed...), which `FakeYahoo._answer` plays for any
endpoint (yahoo_fake_quote.py adds the quote endpoints through `_route`). Nothing ever leaves
the process.
"""

from __future__ import annotations

import enum
import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, TypeAlias
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

CRUMB = "Fake.Crumb-123"
VALID_RANGES = ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"]
NOT_FOUND_BODY = {
    "chart": {
        "result": None,
        "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
    }
}
QUOTE_SUMMARY_NOT_FOUND = {
    "quoteSummary": {
        "result": None,
        "error": {"code": "Not Found", "description": "Quote not found for symbol"},
    }
}
QUOTE_NOT_FOUND: dict[str, Any] = {"quoteResponse": {"result": [], "error": None}}
# What guce.yahoo.com/consent shows outside the EU: no consent form, so no csrfToken.
CONSENT_PAGE = "<!doctype html><html><head><title>Yahoo</title></head><body></body></html>"
A3_COOKIE = (
    "A3=d=AQABBFakeCookieValue&S=AQAAAFake; Max-Age=31557600; Domain=.yahoo.com; Path=/;"
    " SameSite=None; Secure; HttpOnly"
)
NEW_YORK_OFFSET_S = -4 * 3600  # EDT; the exact offset only matters for display
Timeout: TypeAlias = float | tuple[float, float] | None  # what requests passes to `send`


class Behaviour(enum.Enum):
    """How the fake answers a symbol's requests (the chart endpoint, or the quote endpoints)."""

    OK = "ok"
    UNKNOWN = "unknown"  # 404 with Yahoo's "No data found, symbol may be delisted"
    RATE_LIMITED_THEN_OK = "rate_limited_then_ok"  # `failures` answers 429, then OK
    RATE_LIMITED = "rate_limited"  # always 429
    SLOW = "slow"  # waits `delay_s`; past the caller's timeout it raises ReadTimeout
    MALFORMED = "malformed"  # 200 with an HTML page
    TRUNCATED = "truncated"  # 200 with the chart JSON cut in the middle
    ZERO_PRICE = "zero_price"  # a well-formed chart whose regularMarketPrice is 0
    CONNECTION_ERROR = "connection_error"  # the connection is refused


def chart_json(
    symbol: str,
    price: float,
    quoted_at: datetime,
    *,
    currency: str = "USD",
    exchange_tz: str = "America/New_York",
    instrument_type: str = "EQUITY",
    range_: str = "1d",
    interval: str = "1d",
    bars: int = 1,
) -> dict[str, Any]:
    """A chart answer as Yahoo sends it: `meta` plus daily bars ending on the quote's day."""
    quoted = int(quoted_at.timestamp())
    day = quoted_at.astimezone(UTC).replace(hour=13, minute=30, second=0, microsecond=0)
    opens = [int((day - timedelta(days=bars - 1 - i)).timestamp()) for i in range(bars)]
    period = {"timezone": "EDT", "gmtoffset": NEW_YORK_OFFSET_S}
    regular_start = opens[-1]
    closes = [round(price * (1 - 0.001 * (bars - 1 - i)), 4) for i in range(bars)]
    meta = {
        "currency": currency,
        "symbol": symbol,
        "exchangeName": "NMS",
        "fullExchangeName": "NasdaqGS",
        "instrumentType": instrument_type,
        "firstTradeDate": 345479400,
        "regularMarketTime": quoted,
        "hasPrePostMarketData": True,
        "gmtoffset": NEW_YORK_OFFSET_S,
        "timezone": "EDT",
        "exchangeTimezoneName": exchange_tz,
        "regularMarketPrice": price,
        "fiftyTwoWeekHigh": round(price * 1.2, 2),
        "fiftyTwoWeekLow": round(price * 0.8, 2),
        "regularMarketDayHigh": round(price * 1.01, 2),
        "regularMarketDayLow": round(price * 0.99, 2),
        "regularMarketVolume": 41234567,
        "longName": f"{symbol} Inc.",
        "shortName": f"{symbol} Inc.",
        "chartPreviousClose": round(price * 0.995, 2),
        "previousClose": round(price * 0.995, 2),
        "scale": 3,
        "priceHint": 2,
        "currentTradingPeriod": {
            "pre": {**period, "start": regular_start - 19800, "end": regular_start},
            "regular": {**period, "start": regular_start, "end": regular_start + 23400},
            "post": {**period, "start": regular_start + 23400, "end": regular_start + 37800},
        },
        "dataGranularity": interval,
        "range": range_,
        "validRanges": VALID_RANGES,
    }
    return {
        "chart": {
            "result": [
                {
                    "meta": meta,
                    "timestamp": opens,
                    "indicators": {
                        "quote": [
                            {
                                "open": [round(c * 0.998, 4) for c in closes],
                                "high": [round(c * 1.01, 4) for c in closes],
                                "low": [round(c * 0.99, 4) for c in closes],
                                "close": closes,
                                "volume": [41234567 + i for i in range(bars)],
                            }
                        ],
                        "adjclose": [{"adjclose": closes}],
                    },
                }
            ],
            "error": None,
        }
    }


@dataclass
class FakeSymbol:
    """What the fake knows of one symbol."""

    behaviour: Behaviour = Behaviour.OK
    price: float = 100.0
    quoted_at: datetime = datetime(2026, 1, 5, 21, 0, tzinfo=UTC)
    failures: int = 2  # RATE_LIMITED_THEN_OK: how many 429 answers come first
    delay_s: float = 5.0  # SLOW: how long the server takes


def _response(
    request: requests.PreparedRequest,
    status: int,
    body: bytes | str | Mapping[str, Any],
    *,
    content_type: str = "application/json;charset=utf-8",
    set_cookie: str | None = None,
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = http.client.responses.get(status, "")
    if isinstance(body, Mapping):
        body = json.dumps(body, separators=(",", ":"))
    response._content = body.encode() if isinstance(body, str) else body
    response.headers = CaseInsensitiveDict({"Content-Type": content_type})
    response.encoding = "utf-8"
    response.url = request.url or ""
    response.request = request
    if set_cookie is not None:
        # requests copies cookies from `raw._original_response.msg` into the session's jar.
        message = http.client.HTTPMessage()
        message["Set-Cookie"] = set_cookie
        response.headers["Set-Cookie"] = set_cookie
        response.raw = SimpleNamespace(_original_response=SimpleNamespace(msg=message))
    return response


class FakeYahoo(BaseAdapter):
    """Transport adapter answering like Yahoo; records every request it receives."""

    def __init__(self, latency_s: float = 0.0, default: FakeSymbol | None = None) -> None:
        super().__init__()
        self.latency_s = latency_s
        self.default = default  # answers for symbols not added (None: they are unknown)
        self.symbols: dict[str, FakeSymbol] = {}
        self.urls: list[str] = []
        self.chart_calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._released = threading.Event()  # set: SLOW answers at once

    def add(self, symbol: str, behaviour: Behaviour = Behaviour.OK, **kwargs: Any) -> FakeSymbol:
        """Declare a symbol and how the fake answers its requests."""
        fake = FakeSymbol(behaviour, **kwargs)
        self.symbols[symbol] = fake
        return fake

    def release(self) -> None:
        """Make SLOW symbols answer at once from now on, including requests already waiting."""
        self._released.set()

    def session(self) -> requests.Session:
        """A fresh session whose every request is answered by this fake."""
        session = requests.Session()
        session.trust_env = False  # no proxy or .netrc lookup: nothing leaves the process
        session.mount("https://", self)
        session.mount("http://", self)
        return session

    def hosts(self) -> set[str]:
        """Every host a request was sent to."""
        return {urlsplit(url).hostname or "" for url in self.urls}

    def send(  # type: ignore[override]  # requests' signature, keyword defaults as HTTPAdapter
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Timeout = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = request.url or ""
        with self._lock:
            self.urls.append(url)
        if self.latency_s:
            time.sleep(self.latency_s)
        return self._route(request, urlsplit(url), timeout)

    def _route(
        self, request: requests.PreparedRequest, parts: SplitResult, timeout: Timeout
    ) -> requests.Response:
        """The answer to one recorded request, chosen by its host and path."""
        host, path = parts.hostname or "", parts.path
        if host == "fc.yahoo.com":
            return _response(
                request, 404, "<html>404</html>", content_type="text/html", set_cookie=A3_COOKIE
            )
        if path.endswith("/v1/test/getcrumb"):
            return _response(request, 200, CRUMB, content_type="text/plain;charset=utf-8")
        if host.endswith("consent.yahoo.com"):
            return _response(request, 200, CONSENT_PAGE, content_type="text/html")
        if path.startswith("/v10/finance/quoteSummary/"):
            return _response(request, 404, QUOTE_SUMMARY_NOT_FOUND)
        if path.startswith("/v7/finance/quote"):
            return _response(request, 200, QUOTE_NOT_FOUND)
        if path.startswith("/v8/finance/chart/"):
            return self._chart(request, unquote(path.rsplit("/", 1)[1]), parts.query, timeout)
        return _response(request, 404, "<html>not here</html>", content_type="text/html")

    def _count(self, calls: Counter[str], symbol: str) -> int:
        """Count one more request for `symbol` in `calls`; how many there have been."""
        with self._lock:
            calls[symbol] += 1
            return calls[symbol]

    def _chart(
        self, request: requests.PreparedRequest, symbol: str, query: str, timeout: Timeout
    ) -> requests.Response:
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        return self._answer(
            request,
            symbol,
            self._count(self.chart_calls, symbol),
            timeout,
            not_found=lambda: _response(request, 404, NOT_FOUND_BODY),
            body=lambda fake, price: chart_json(
                symbol,
                price,
                fake.quoted_at,
                range_=params.get("range", "1d"),
                interval=params.get("interval", "1d"),
            ),
        )

    def _answer(
        self,
        request: requests.PreparedRequest,
        symbol: str,
        calls: int,
        timeout: Timeout,
        *,
        not_found: Callable[[], requests.Response],
        body: Callable[[FakeSymbol, float], Mapping[str, Any]],
    ) -> requests.Response:
        """Answer the `calls`-th request for `symbol` of an endpoint, as its behaviour says.

        The behaviours are the same for every endpoint; what differs is passed in: `not_found`,
        the endpoint's answer for a symbol Yahoo does not know, and `body`, its JSON for a
        well-formed answer from the symbol's fake and the price to show (0 for ZERO_PRICE).
        """
        fake = self.symbols.get(symbol, self.default)
        if fake is None or fake.behaviour is Behaviour.UNKNOWN:
            return not_found()
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
                self._released.wait(read_timeout)
                raise requests.ReadTimeout(f"fake: read timed out after {read_timeout} s")
            self._released.wait(fake.delay_s)
        if behaviour is Behaviour.MALFORMED:
            return _response(request, 200, "<html>oops", content_type="text/html")
        answer = body(fake, 0.0 if behaviour is Behaviour.ZERO_PRICE else fake.price)
        if behaviour is Behaviour.TRUNCATED:
            return _response(request, 200, json.dumps(answer)[:200])
        return _response(request, 200, answer)

    def close(self) -> None:
        """Nothing to release."""

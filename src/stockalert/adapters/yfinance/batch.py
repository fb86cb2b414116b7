"""What the yfinance adapters share: a batch of tickers fetched concurrently, each with
bounded retries of 429s and network errors, a per-request timeout and a batch deadline, and
yfinance's process-wide state (its `YfData` session singleton, its caches) pointed where we
want it. The subclasses (`chart`, `quote`) say how one ticker is asked for."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yfinance as yf
from yfinance import cache as yf_cache
from yfinance._http import new_session
from yfinance.data import YfData

from stockalert.adapters.files import private_dir
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.ports import FetchFailed, PriceResult

log = logging.getLogger(__name__)

# Yahoo's own words when a symbol does not exist (chart.error.description of a 404).
NOT_FOUND_WORDS = ("not found", "no data found", "delisted")


class Retryable(Exception):
    """A failure worth another attempt (429, refused connection); `reason` is for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def point_yfinance_caches_at(cache_dir: Path) -> None:
    """Make yfinance keep its caches (time zones, cookie, ISINs) in `cache_dir`.

    `set_tz_cache_location` moves all three in yfinance 1.7, but a cache already opened keeps
    its database handle on the old file: drop those handles so that the next use reopens
    under the new location.
    """
    private_dir(cache_dir)
    yf.set_tz_cache_location(str(cache_dir))
    for manager, handle in (
        ("_TzCacheManager", "_tz_cache"),
        ("_CookieCacheManager", "_Cookie_cache"),
        ("_ISINCacheManager", "_isin_cache"),
    ):
        owner = getattr(yf_cache, manager, None)
        if owner is not None and hasattr(owner, handle):
            setattr(owner, handle, None)


def is_timeout(err: BaseException) -> bool:
    # requests.Timeout and curl_cffi's Timeout share the name but no base class.
    return isinstance(err, TimeoutError | requests.Timeout) or any(
        cls.__name__ == "Timeout" for cls in type(err).__mro__
    )


def describe(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text if len(text) <= 200 else text[:200] + "..."


class YahooBatchSource:
    """PriceSource port: one batch of tickers fetched concurrently from Yahoo via yfinance.

    Per ticker: a Quote with Yahoo's price and quote time; UnknownTicker when Yahoo says the
    symbol does not exist; FetchFailed otherwise (rate limited, network, timeout, malformed
    answer, unusable price). 429s and refused connections are retried with exponential
    backoff and jitter (`retries` more attempts from `backoff_s`); timeouts are not retried
    (the batch has a budget). Tickers without an answer when the batch `deadline_s` expires
    are FetchFailed("timeout: ..."). `fetch` never raises.

    `max_workers` threads take the batch `chunk_size` tickers at a time (1 balances best: a
    slow ticker then holds up only itself). yfinance parses every answer into pandas frames
    under the GIL (several ms of CPU per ticker), so past the point where the CPU is busy,
    more workers do not shorten a cycle.
    """

    def __init__(
        self,
        *,
        session_factory: Callable[[], requests.Session] | None = None,
        cache_dir: Path | None = None,
        timeout_s: float = 10.0,
        deadline_s: float = 60.0,
        max_workers: int = 32,
        chunk_size: int = 1,
        retries: int = 2,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if timeout_s <= 0 or deadline_s <= 0:
            raise ValueError("timeout_s and deadline_s must be positive")
        if max_workers < 1 or chunk_size < 1 or retries < 0 or backoff_s < 0:
            raise ValueError("max_workers and chunk_size must be >= 1, retries and backoff >= 0")
        self._timeout_s = timeout_s
        self._deadline_s = deadline_s
        self._max_workers = max_workers
        self._chunk_size = chunk_size
        self._retries = retries
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._jitter = jitter
        # None: yfinance's own default (curl_cffi impersonating a browser, else requests).
        self._session_factory: Callable[[], Any] = session_factory or new_session
        self._session: Any = None
        self._session_lock = threading.Lock()
        if cache_dir is not None:
            point_yfinance_caches_at(cache_dir)
        # Process-wide yfinance settings this adapter relies on:
        # raise instead of logging and returning an empty frame (the modern spelling of the
        # deprecated `history(raise_errors=True)`), ...
        yf.config.debug.hide_exceptions = False
        # ... and keep the deprecation notices yfinance's own code triggers (pandas 3 warns
        # on every call) out of the log: we cannot act on them.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"^yfinance")

    # ----- the port ------------------------------------------------------------------------

    def fetch(self, tickers: Collection[Ticker]) -> Mapping[Ticker, PriceResult]:
        """One result per requested ticker, within the batch deadline; never raises."""
        wanted = list(dict.fromkeys(tickers))
        if not wanted:
            return {}
        deadline = time.monotonic() + self._deadline_s
        results: dict[Ticker, PriceResult] = {}
        lock = threading.Lock()
        missing = f"timeout: no answer within the batch deadline of {self._deadline_s:g} s"
        try:
            data, session = self._yf_data()
            chunks = list(chunked(wanted, self._chunk_size))
            pool = ThreadPoolExecutor(
                max_workers=min(self._max_workers, len(chunks)), thread_name_prefix="yfinance"
            )
            try:
                futures = [
                    pool.submit(self._fetch_chunk, data, session, chunk, deadline, results, lock)
                    for chunk in chunks
                ]
                wait(futures, timeout=max(0.0, deadline - time.monotonic()))
            finally:
                # Late workers finish their HTTP call (bounded by timeout_s) and are ignored.
                pool.shutdown(wait=False, cancel_futures=True)
        except Exception as err:  # never let a failure escape the port
            log.exception("yfinance batch failed")
            missing = f"price source error: {describe(err)}"
        with lock:
            return {t: results.get(t) or FetchFailed(t, missing) for t in wanted}

    # ----- internals ---------------------------------------------------------------------

    def _yf_data(self) -> tuple[Any, Any]:
        """yfinance's singleton, made to use our session (created once, reused across calls)."""
        with self._session_lock:
            if self._session is None:
                self._session = self._session_factory()
            session = self._session
        # The singleton is process-wide: re-assert our session at every batch.
        return YfData(session=session), session

    def _fetch_chunk(
        self,
        data: Any,
        session: Any,
        chunk: Sequence[Ticker],
        deadline: float,
        results: dict[Ticker, PriceResult],
        lock: threading.Lock,
    ) -> None:
        for ticker in chunk:
            if time.monotonic() >= deadline:
                return
            try:
                result = self._fetch_one(data, session, ticker, deadline)
            except Exception as err:  # e.g. an injected sleep that fails: this ticker only
                log.warning("yfinance failed for %s", ticker, exc_info=True)
                result = FetchFailed(ticker, f"unexpected error: {describe(err)}")
            with lock:
                results[ticker] = result

    def _fetch_one(self, data: Any, session: Any, ticker: Ticker, deadline: float) -> PriceResult:
        """The result for one ticker, retrying 429s and refused connections; never raises."""
        attempts = self._retries + 1
        for attempt in range(attempts):
            try:
                return self._attempt(data, session, ticker)
            except Retryable as failure:
                reason = failure.reason
            except Exception as err:  # an unexpected failure is this ticker's, not the batch's
                log.warning("yfinance failed for %s", ticker, exc_info=True)
                return FetchFailed(ticker, f"unexpected error: {describe(err)}")
            if attempt + 1 == attempts:
                break
            base = self._backoff_s * 2**attempt
            delay = base * (0.75 + 0.5 * self._jitter())  # +-25% so retries do not align
            if time.monotonic() + delay >= deadline:
                return FetchFailed(ticker, f"{reason}; no time left to retry")
            self._sleep(delay)
        return FetchFailed(ticker, f"{reason} (gave up after {attempts} attempts)")

    def _attempt(self, data: Any, session: Any, ticker: Ticker) -> PriceResult:
        """One try for one ticker; raise Retryable for what is worth another attempt."""
        raise NotImplementedError


def quote_result(ticker: Ticker, price: object, quoted_at: object) -> PriceResult:
    if isinstance(price, bool) or not isinstance(price, int | float):
        return FetchFailed(ticker, f"malformed answer from Yahoo: regularMarketPrice={price!r}")
    if not math.isfinite(price) or price <= 0:
        return FetchFailed(ticker, f"unusable price from Yahoo: {price!r}")
    # yfinance turns regularMarketTime into a pandas Timestamp (a datetime) in the exchange's
    # zone.
    if not isinstance(quoted_at, datetime) or quoted_at.utcoffset() is None:
        return FetchFailed(ticker, f"malformed answer from Yahoo: regularMarketTime={quoted_at!r}")
    moment = datetime.fromtimestamp(quoted_at.timestamp(), UTC)
    return Quote(ticker, float(price), moment)


def chunked(items: Sequence[Ticker], size: int) -> Iterator[Sequence[Ticker]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

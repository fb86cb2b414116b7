"""A circuit breaker around the price source that counts errors *and* slowness.

CLOSED: batches go through; `failure_threshold` failed batches in a row open it.
OPEN: batches are answered at once with FetchFailed("circuit open") without touching the
source, until `recovery_timeout_s` has passed. HALF_OPEN: up to `half_open_max_calls` trial
batches go through; a success closes the breaker, a failure opens it again.

A batch fails when it takes longer than `slow_call_s`, when the source raises, or when no
ticker got a quote while some could not be fetched (the source is down). Unknown tickers are
the user's mistake, not an outage: a batch of only unknown tickers is a success. Time comes
from an injected monotonic clock, so tests drive it without sleeping.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Collection, Mapping

from stockalert.domain.model import Quote, Ticker
from stockalert.domain.ports import FetchFailed, PriceResult, PriceSource

log = logging.getLogger(__name__)


class BreakerState(enum.StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CircuitBreaker:
    """Thread-safe breaker state machine over an injected monotonic clock (seconds)."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        name: str = "prices",
        failure_threshold: int = 3,
        recovery_timeout_s: float = 300.0,
        half_open_max_calls: int = 1,
        slow_call_s: float = 30.0,
    ) -> None:
        if failure_threshold < 1 or half_open_max_calls < 1:
            raise ValueError("failure_threshold and half_open_max_calls must be >= 1")
        self._clock = clock
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_timeout_s = recovery_timeout_s
        self.half_open_max_calls = half_open_max_calls
        self.slow_call_s = slow_call_s
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trials = 0

    def now(self) -> float:
        """The breaker's clock."""
        return self._clock()

    @property
    def state(self) -> BreakerState:
        """The current state (OPEN turns HALF_OPEN once the recovery timeout has passed)."""
        with self._lock:
            self._maybe_half_open()
            return self._state

    def _maybe_half_open(self) -> None:
        if (
            self._state is BreakerState.OPEN
            and self._clock() >= self._opened_at + self.recovery_timeout_s
        ):
            self._state = BreakerState.HALF_OPEN
            self._trials = 0
            log.info("event=breaker_half_open breaker=%s", self.name)

    def try_acquire(self) -> bool:
        """May a call go through now? (A HALF_OPEN admission is a trial; report its outcome.)"""
        with self._lock:
            self._maybe_half_open()
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.HALF_OPEN and self._trials < self.half_open_max_calls:
                self._trials += 1
                return True
            return False

    def record(self, *, success: bool, duration_s: float) -> None:
        """The outcome of an admitted call; a slow call counts as a failure."""
        failed = not success or duration_s > self.slow_call_s
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                if failed:
                    self._open("trial failed")
                else:
                    self._state = BreakerState.CLOSED
                    self._failures = 0
                    log.info("event=breaker_closed breaker=%s", self.name)
                return
            if not failed:
                self._failures = 0
                return
            self._failures += 1
            if self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
                self._open(f"{self._failures} failed calls in a row")

    def _open(self, reason: str) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._failures = 0
        log.warning(
            "event=breaker_open breaker=%s reason=%r retry_after_s=%g",
            self.name,
            reason,
            self.recovery_timeout_s,
        )


class BreakerPriceSource:
    """PriceSource decorator: the breaker decides whether a batch reaches the source."""

    def __init__(self, source: PriceSource, breaker: CircuitBreaker) -> None:
        self._source = source
        self._breaker = breaker

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    def fetch(self, tickers: Collection[Ticker]) -> Mapping[Ticker, PriceResult]:
        if not tickers:
            return {}
        if not self._breaker.try_acquire():
            return {t: FetchFailed(t, "circuit open: price source unavailable") for t in tickers}
        began = self._breaker.now()
        try:
            results = dict(self._source.fetch(tickers))
        except Exception as err:  # a source failure of any kind is an outage
            log.exception("event=price_source_failed")
            self._breaker.record(success=False, duration_s=self._breaker.now() - began)
            return {
                t: FetchFailed(t, f"price source failed: {type(err).__name__}") for t in tickers
            }
        duration = self._breaker.now() - began
        for ticker in tickers:
            results.setdefault(ticker, FetchFailed(ticker, "no answer from the price source"))
        quoted = any(isinstance(r, Quote) for r in results.values())
        failed = any(isinstance(r, FetchFailed) for r in results.values())
        self._breaker.record(success=quoted or not failed, duration_s=duration)
        return results

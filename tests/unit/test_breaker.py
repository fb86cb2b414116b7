"""The circuit breaker around the price source, driven by a fake clock (no sleeping)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime

import pytest

from stockalert.adapters.breaker import BreakerPriceSource, BreakerState, CircuitBreaker
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.ports import FetchFailed, PriceResult, UnknownTicker

AAPL, NOPE = Ticker("AAPL"), Ticker("NOPE")
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedSource:
    """Answers each fetch with the next scripted behaviour; counts calls."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls = 0
        self.script: list[str] = []

    def fetch(self, tickers: Collection[Ticker]) -> Mapping[Ticker, PriceResult]:
        self.calls += 1
        behaviour = self.script.pop(0) if self.script else "ok"
        if behaviour == "raise":
            raise ConnectionError("network down")
        if behaviour == "slow":
            self.clock.now += 31.0
        if behaviour == "down":
            return {t: FetchFailed(t, "HTTP 503") for t in tickers}
        if behaviour == "unknown":
            return {t: UnknownTicker(t) for t in tickers}
        return {t: Quote(t, 190.0, T0) for t in tickers}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def source(clock: FakeClock) -> ScriptedSource:
    return ScriptedSource(clock)


@pytest.fixture
def guarded(clock: FakeClock, source: ScriptedSource) -> BreakerPriceSource:
    breaker = CircuitBreaker(clock, failure_threshold=3, recovery_timeout_s=60.0, slow_call_s=30.0)
    return BreakerPriceSource(source, breaker)


def state_of(guarded: BreakerPriceSource) -> BreakerState:
    """The breaker's state now (read through a call: the type checker would otherwise keep
    the state an earlier assertion narrowed `guarded.breaker.state` to)."""
    return guarded.breaker.state


def test_breaker_opens_after_the_failure_threshold(
    guarded: BreakerPriceSource, source: ScriptedSource
) -> None:
    """Three failed batches in a row open the breaker; two do not."""
    source.script = ["down", "raise", "down"]
    guarded.fetch([AAPL])
    guarded.fetch([AAPL])
    assert state_of(guarded) is BreakerState.CLOSED
    assert guarded.fetch([AAPL]) == {AAPL: FetchFailed(AAPL, "HTTP 503")}
    assert state_of(guarded) is BreakerState.OPEN


def test_a_success_resets_the_failure_count(
    guarded: BreakerPriceSource, source: ScriptedSource
) -> None:
    """Failures must be consecutive to open the breaker."""
    source.script = ["down", "down", "ok", "down", "down"]
    for _ in range(5):
        guarded.fetch([AAPL])
    assert state_of(guarded) is BreakerState.CLOSED


def test_an_open_breaker_rejects_fast_without_calling_the_source(
    guarded: BreakerPriceSource, source: ScriptedSource, clock: FakeClock
) -> None:
    """While open, batches are answered FetchFailed at once; the source is not touched."""
    source.script = ["down"] * 3
    for _ in range(3):
        guarded.fetch([AAPL])
    calls = source.calls
    clock.now += 59.0
    answer = guarded.fetch([AAPL, NOPE])
    assert source.calls == calls
    assert answer == {
        AAPL: FetchFailed(AAPL, "circuit open: price source unavailable"),
        NOPE: FetchFailed(NOPE, "circuit open: price source unavailable"),
    }


def test_half_open_admits_one_trial_and_closes_on_success(
    guarded: BreakerPriceSource, source: ScriptedSource, clock: FakeClock
) -> None:
    """After the recovery timeout one trial goes through; its success closes the breaker."""
    source.script = ["down"] * 3
    for _ in range(3):
        guarded.fetch([AAPL])
    clock.now += 60.0
    assert state_of(guarded) is BreakerState.HALF_OPEN
    assert guarded.breaker.try_acquire()  # the one trial ...
    assert not guarded.breaker.try_acquire()  # ... and nobody else meanwhile
    guarded.breaker.record(success=True, duration_s=0.1)
    assert state_of(guarded) is BreakerState.CLOSED
    assert isinstance(guarded.fetch([AAPL])[AAPL], Quote)


def test_a_failed_trial_reopens_the_breaker(
    guarded: BreakerPriceSource, source: ScriptedSource, clock: FakeClock
) -> None:
    """A failing trial opens the breaker for another recovery period."""
    source.script = ["down"] * 4
    for _ in range(3):
        guarded.fetch([AAPL])
    clock.now += 60.0
    guarded.fetch([AAPL])  # the trial fails
    assert state_of(guarded) is BreakerState.OPEN
    clock.now += 30.0
    assert state_of(guarded) is BreakerState.OPEN
    clock.now += 30.0
    assert state_of(guarded) is BreakerState.HALF_OPEN


def test_a_slow_source_counts_as_a_failure(
    guarded: BreakerPriceSource, source: ScriptedSource
) -> None:
    """Quotes that arrive after slow_call_s still count against the source."""
    source.script = ["slow"] * 3
    results = [guarded.fetch([AAPL]) for _ in range(3)]
    assert all(isinstance(r[AAPL], Quote) for r in results)  # the answers are still used
    assert state_of(guarded) is BreakerState.OPEN


def test_unknown_tickers_never_trip_the_breaker(
    guarded: BreakerPriceSource, source: ScriptedSource
) -> None:
    """A user's misspelt symbol is not an outage."""
    source.script = ["unknown"] * 10
    for _ in range(10):
        assert guarded.fetch([NOPE]) == {NOPE: UnknownTicker(NOPE)}
    assert state_of(guarded) is BreakerState.CLOSED


def test_every_requested_ticker_gets_an_answer(clock: FakeClock) -> None:
    """A source that forgets a ticker still yields one result per ticker."""

    class Forgetful:
        def fetch(self, tickers: Collection[Ticker]) -> Mapping[Ticker, PriceResult]:
            return {}

    guarded = BreakerPriceSource(Forgetful(), CircuitBreaker(clock))
    assert guarded.fetch([AAPL]) == {AAPL: FetchFailed(AAPL, "no answer from the price source")}


def test_breaker_settings_are_validated(clock: FakeClock) -> None:
    """A threshold of zero would never let anything through."""
    with pytest.raises(ValueError, match=">= 1"):
        CircuitBreaker(clock, failure_threshold=0)

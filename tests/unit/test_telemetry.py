"""Metrics and the operators' endpoints: gRPC calls counted by method and status code and
timed, /metrics in the Prometheus text format, /healthz and /readyz."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stockalert.adapters.breaker import CircuitBreaker
from stockalert.adapters.grpc.client import ApiError, StockAlertClient
from stockalert.adapters.grpc.server import RunningServer, start, stop
from stockalert.adapters.memory.fakes import StaticPriceSource
from stockalert.adapters.telemetry import Metrics, RunningEndpoints, endpoints
from stockalert.domain.commands import (
    CollectPrices,
    RecordQuotes,
    RegisterUser,
    RetryPendingNotifications,
    SubscriptionSpec,
)
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.ports import MailTemporaryError
from tests.metrics import http_get, samples

PASSWORD = "correct horse battery staple"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(role="test-role")


@pytest.fixture
def server(container: Any, metrics: Metrics) -> Iterator[RunningServer]:
    running = start(container.bus(), "127.0.0.1:0", metrics=metrics)
    yield running
    stop(running, grace=0)


def get(running: RunningEndpoints, path: str) -> tuple[int, str]:
    return http_get(f"127.0.0.1:{running.port}", path)


def test_grpc_calls_are_counted_by_method_and_code_and_timed(
    server: RunningServer, metrics: Metrics
) -> None:
    with (
        endpoints(metrics, "127.0.0.1:0") as running,
        StockAlertClient(f"127.0.0.1:{server.port}", attempts=1) as client,
    ):
        client.register("ann@example.com", PASSWORD)
        client.login("ann@example.com", PASSWORD)
        with pytest.raises(ApiError):
            client.login("ann@example.com", "not the password")
        with pytest.raises(ApiError):
            client.latest("NOPE")  # not watched
        status, text = get(running, "/metrics")

    assert status == 200
    counts = samples(text, "stockalert_grpc_requests_total")
    role = ("role", "test-role")
    assert counts[(("code", "OK"), ("method", "RegisterUser"), role)] == 1
    assert counts[(("code", "OK"), ("method", "LoginUser"), role)] == 1
    assert counts[(("code", "UNAUTHENTICATED"), ("method", "LoginUser"), role)] == 1
    assert counts[(("code", "NOT_FOUND"), ("method", "GetLatestValue"), role)] == 1
    timed = samples(text, "stockalert_grpc_request_duration_seconds_count")
    assert timed[(("method", "LoginUser"), role)] == 2
    assert (
        samples(text, "stockalert_grpc_request_duration_seconds_sum")[
            (("method", "LoginUser"), role)
        ]
        > 0
    )


def test_healthz_is_alive_and_readyz_names_what_is_not_reachable(metrics: Metrics) -> None:
    database_up = False

    def database() -> None:
        if not database_up:
            raise ConnectionError("connection refused")

    with endpoints(metrics, "127.0.0.1:0", {"database": database}) as running:
        assert get(running, "/healthz") == (200, "ok\n")
        assert get(running, "/readyz") == (503, "not ready: database\n")
        database_up = True
        assert get(running, "/readyz") == (200, "ready\n")
        assert get(running, "/nothing")[0] == 404


def test_the_pipeline_reports_collection_alerts_deliveries_and_replays(container: Any) -> None:
    """Through the embedded wiring (in memory): a collection cycle, a crossing, its e-mail
    and a replayed command each move their series, labelled by the process's role."""
    source = StaticPriceSource()
    container.collection.price_source.override(source)
    bus = container.bus()
    clock = container.core.clock()
    register = RegisterUser(
        "req-1", "ann@example.com", PASSWORD, (SubscriptionSpec("AAPL", high_value=190.0),)
    )
    bus.handle(register)
    bus.handle(register)  # the same request again: replayed
    source.quotes[Ticker("AAPL")] = Quote(Ticker("AAPL"), 185.0, clock.now())
    bus.handle(CollectPrices())
    clock.advance(60)
    source.quotes[Ticker("AAPL")] = Quote(Ticker("AAPL"), 191.0, clock.now())
    clock.advance(2)  # collected and delivered two seconds after the quote
    bus.handle(CollectPrices())

    text = container.core.metrics().exposition().decode()
    role = ("role", "library")
    assert samples(text, "stockalert_request_replays_total") == {
        (("method", "RegisterUser"), role): 1
    }
    assert samples(text, "stockalert_quotes_stored_total") == {(role,): 2}
    assert samples(text, "stockalert_tickers_monitored") == {(role,): 1}
    assert samples(text, "stockalert_collection_cycle_seconds_count") == {(role,): 2}
    assert samples(text, "stockalert_quotes_applied_total") == {(role,): 2}
    assert samples(text, "stockalert_alerts_total") == {
        (("kind", "CROSSING"), role, ("side", "HIGH")): 1
    }
    assert samples(text, "stockalert_notifications_total") == {(("outcome", "sent"), role): 1}
    assert samples(text, "stockalert_notification_delivery_seconds_sum") == {(role,): 2.0}


def test_the_breaker_state_is_read_at_each_scrape(metrics: Metrics) -> None:
    """closed -> open after three failures -> half_open once the recovery time passed."""
    now = [0.0]
    breaker = CircuitBreaker(lambda: now[0], failure_threshold=3, recovery_timeout_s=60)
    metrics.watch_breaker(breaker.name, lambda: breaker.state.value)

    def states() -> dict[str, float]:
        found = samples(metrics.exposition().decode(), "stockalert_circuit_breaker_state")
        return {dict(labels)["state"]: value for labels, value in found.items()}

    assert states() == {"closed": 1, "half_open": 0, "open": 0}
    for _ in range(3):
        breaker.record(success=False, duration_s=0.1)
    assert states() == {"closed": 0, "half_open": 0, "open": 1}
    now[0] = 61.0
    assert states() == {"closed": 0, "half_open": 1, "open": 0}


def test_pending_notifications_are_read_at_each_scrape(container: Any) -> None:
    """A crossing the mailer could not send yet is pending; sent, it is not."""
    metrics = container.core.metrics()
    metrics.watch_pending(container.core.read_model().pending_notifications)
    mailer = container.delivery.mailer()
    mailer.fail_next(MailTemporaryError("421 try later"))
    bus = container.bus()
    bus.handle(RegisterUser("r1", "ann@example.com", PASSWORD, (SubscriptionSpec("AAPL", 190.0),)))
    clock = container.core.clock()
    for price in (185.0, 191.0):
        clock.advance(60)
        bus.handle(RecordQuotes((Quote(Ticker("AAPL"), price, clock.now()),)))

    def pending() -> float:
        found = samples(metrics.exposition().decode(), "stockalert_notifications_pending")
        return found[(("role", "library"),)]

    assert pending() == 1
    clock.advance(3600)  # past the retry's backoff
    bus.handle(RetryPendingNotifications())
    assert pending() == 0

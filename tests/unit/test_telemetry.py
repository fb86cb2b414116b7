"""Metrics and the operators' endpoints: gRPC calls counted by method and status code and
timed, /metrics in the Prometheus text format, /healthz and /readyz."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stockalert.adapters.grpc.client import ApiError, StockAlertClient
from stockalert.adapters.grpc.server import RunningServer, start, stop
from stockalert.adapters.telemetry import Metrics, RunningEndpoints, endpoints

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
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{running.port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called `name` in a scrape, keyed by their sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


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

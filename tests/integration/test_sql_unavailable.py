"""A database that cannot be reached: UNAVAILABLE answers, and a server that keeps running."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stockalert.adapters.grpc.client import ApiError, StockAlertClient
from stockalert.adapters.grpc.server import start, stop
from stockalert.adapters.memory.fakes import ManualClock
from tests.processes import free_port, spawn_run
from tests.wiring import build_container, sql_config

UNREACHABLE_URL = "mysql+pymysql://u:p@127.0.0.1:1/db"
PASSWORD = "password123"
QUICK_S = 5.0  # an unreachable database must be reported well within this


@pytest.fixture
def server() -> Iterator[dict[str, Any]]:
    """A gRPC server whose bus runs over an unreachable MySQL database."""
    clock = ManualClock()
    container = build_container(config=sql_config(UNREACHABLE_URL), clock=clock)
    running = start(container.bus(), "127.0.0.1:0")
    try:
        yield {
            "address": f"127.0.0.1:{running.port}",
            "token": container.auth.tokens().issue("id1", clock.now())[0],
        }
    finally:
        stop(running, grace=1.0)
        container.shutdown_resources()


def status_of(call: Callable[[], object]) -> tuple[grpc.StatusCode | None, float]:
    """The status code a call ends with (None for success) and how long it took."""
    started = time.monotonic()
    try:
        call()
    except ApiError as err:
        return err.code, time.monotonic() - started
    return None, time.monotonic() - started


def test_commands_and_queries_answer_unavailable_quickly_and_the_server_keeps_serving(
    server: dict[str, Any],
) -> None:
    """RegisterUser, LoginUser and authenticated calls all get UNAVAILABLE within seconds."""
    address = server["address"]
    # One attempt, so the server's own answer is seen rather than the client's retries.
    with StockAlertClient(address, token=server["token"], attempts=1, timeout_s=10) as client:
        calls: dict[str, Callable[[], object]] = {
            "RegisterUser": lambda: client.register("erin@example.com", PASSWORD),
            "LoginUser": lambda: client.login("erin@example.com", PASSWORD),
            "ListSubscriptions": client.subscriptions,
            "GetLatestValue": lambda: client.latest("AAPL"),
            "SetSubscription": lambda: client.set_subscription("AAPL", high_value=190.0),
        }
        outcomes = {name: status_of(call) for name, call in calls.items()}

    assert {name: code for name, (code, _) in outcomes.items()} == dict.fromkeys(
        calls, grpc.StatusCode.UNAVAILABLE
    )
    slow = {name: seconds for name, (_, seconds) in outcomes.items() if seconds > QUICK_S}
    assert slow == {}

    with grpc.insecure_channel(address) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)  # its stub file declares no RPCs
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_retrying_client_gives_up_with_unavailable_not_another_code(
    server: dict[str, Any],
) -> None:
    """The CLI's client retries UNAVAILABLE and finally reports it as UNAVAILABLE."""
    with StockAlertClient(
        server["address"], token=server["token"], attempts=3, backoff_s=0.05
    ) as client:
        code, seconds = status_of(lambda: client.register("fred@example.com", PASSWORD))
    assert code is grpc.StatusCode.UNAVAILABLE
    assert seconds < 3 * QUICK_S


# ----- `stockalert run` without its database -----------------------------------------------


def write_prices(path: Path) -> Path:
    start_at = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    lines = ["timestamp,ticker,price"]
    for minute in range(5):
        at = (start_at + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
        lines.append(f"{at},AAPL,{185 + minute:.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_keeps_retrying_while_the_database_is_down_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    """`stockalert run` on an unreachable database logs retries, stays up, exits 0 on SIGTERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKALERT_")} | {
        "STOCKALERT_DB_URL": UNREACHABLE_URL,
        "STOCKALERT_PRICE_SOURCE": f"replay:{write_prices(tmp_path / 'prices.csv')}",
        "STOCKALERT_COLLECT_INTERVAL": "0.3",
        "STOCKALERT_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "STOCKALERT_OUTBOX_DIR": str(tmp_path / "outbox"),
        "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
    }
    log = tmp_path / "run.log"
    process = spawn_run(env, tmp_path, log)
    started = time.monotonic()
    try:
        deadline = started + 15
        while log.read_text().count("event=database_unavailable") < 2:
            assert process.poll() is None, f"exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no retries logged:\n{log.read_text()}"
            time.sleep(0.1)
        time.sleep(max(0.0, started + 3.0 - time.monotonic()))  # still running after ~3 s
        assert process.poll() is None, f"stockalert run exited:\n{log.read_text()}"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert text.count("event=database_unavailable") >= 2
    assert "event=started" not in text  # it never got as far as serving without a database
    assert "Traceback" not in text

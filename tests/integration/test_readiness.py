"""Readiness follows the database: a command-api reports NOT_SERVING on grpc.health.v1 and a
notifier 503 on /readyz while MariaDB is unreachable, and both are ready again once it is
back. The outage is a TCP proxy between the roles and the shared MariaDB, cut and restored;
the server itself keeps running for the other tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from stockalert.adapters.grpc.client import StockAlertClient
from tests.integration.conftest import mariadb_url, worker_database_url
from tests.metrics import http_get
from tests.processes import clean_environ, free_port, spawn, stop, wait_for, wait_until_serving
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

SECRET = "a-token-signing-key-of-at-least-32-bytes"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    server = make_url(mariadb_url())
    with TcpProxy(server.host or "127.0.0.1", server.port or 3306) as running:
        yield running


@pytest.fixture
def roles(tmp_path: Path, proxy: TcpProxy) -> Iterator[dict[str, Any]]:
    """command-api and notifier reaching MariaDB through the proxy only."""
    url = make_url(worker_database_url(mariadb_url(), "readiness", fresh=True))
    through_proxy = url.set(host="127.0.0.1", port=proxy.port)
    grpc_addr = f"127.0.0.1:{free_port()}"
    metrics = {"command-api": f"127.0.0.1:{free_port()}", "notifier": f"127.0.0.1:{free_port()}"}
    env = clean_environ() | {
        "STOCKALERT_DB_URL": through_proxy.render_as_string(hide_password=False),
        "STOCKALERT_AUTH_SECRET": SECRET,
        "STOCKALERT_GRPC_ADDR": grpc_addr,
        "STOCKALERT_OUTBOX_DIR": str(tmp_path / "outbox"),
        "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
        "STOCKALERT_DELIVERY_INTERVAL": "0.5",
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for role in ("command-api", "notifier"):
        role_env = env | {"STOCKALERT_METRICS_PORT": metrics[role]}
        processes[role] = spawn(role_env, tmp_path, tmp_path / f"{role}.log", "serve", role)
    try:
        wait_until_serving(grpc_addr, processes["command-api"], timeout=30)
        yield {"grpc": grpc_addr, "metrics": metrics, "processes": processes, "logs": tmp_path}
    finally:
        for process in processes.values():
            stop(process)


def health(address: str) -> int | None:
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        try:
            return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status)
        except grpc.RpcError:
            return None


def readyz(address: str) -> int:
    return http_get(address, "/readyz")[0]


def test_health_and_readyz_follow_the_database_down_and_back(
    roles: dict[str, Any], proxy: TcpProxy
) -> None:
    address, metrics = roles["grpc"], roles["metrics"]
    logs = sorted(roles["logs"].glob("*.log"))
    wait_for(lambda: readyz(metrics["notifier"]) == 200, 30, "notifier ready", logs=logs)
    assert health(address) == SERVING
    assert readyz(metrics["command-api"]) == 200

    proxy.cut()
    wait_for(lambda: health(address) == NOT_SERVING, 30, "command-api NOT_SERVING", logs=logs)
    wait_for(lambda: readyz(metrics["notifier"]) == 503, 30, "notifier not ready", logs=logs)
    assert readyz(metrics["command-api"]) == 503
    assert all(p.poll() is None for p in roles["processes"].values())  # alive, not ready

    proxy.restore()
    wait_for(lambda: health(address) == SERVING, 30, "command-api SERVING again", logs=logs)
    wait_for(lambda: readyz(metrics["notifier"]) == 200, 30, "notifier ready again", logs=logs)
    # And it works: the pool's cut connections are replaced (a retry at most).
    with StockAlertClient(address) as client:
        assert client.register("back@example.com", "a-long-enough-password").user_id


def test_a_notifier_on_kafka_is_not_ready_while_no_broker_answers(tmp_path: Path) -> None:
    """Its database is there, Kafka is not (nothing listens at the bootstrap address):
    alive, /readyz 503 naming kafka."""
    url = worker_database_url(mariadb_url(), "readiness_kafka", fresh=True)
    metrics = f"127.0.0.1:{free_port()}"
    env = clean_environ() | {
        "STOCKALERT_DB_URL": url,
        "STOCKALERT_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nobody there
        "STOCKALERT_OUTBOX_DIR": str(tmp_path / "outbox"),
        "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
        "STOCKALERT_METRICS_PORT": metrics,
    }
    log = tmp_path / "notifier.log"
    notifier = spawn(env, tmp_path, log, "serve", "notifier")
    try:
        wait_for(lambda: http_get(metrics, "/healthz")[0] == 200, 60, "alive", logs=[log])
        wait_for(
            lambda: http_get(metrics, "/readyz") == (503, "not ready: kafka\n"),
            60,
            "not ready because of Kafka only",
            logs=[log],
        )
        assert notifier.poll() is None
    finally:
        stop(notifier)

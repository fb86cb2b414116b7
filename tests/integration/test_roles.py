"""The roles of the distributed system as their own processes on one database.

command-api, query-api, collector, notifier and cleaner each run as `stockalert serve ROLE`
(the collector as `python -m stockalert.entrypoints.collector`), on one SQLite file migrated
by `stockalert db upgrade`, driven by CLI processes that send commands to the command API
and queries to the query API. The alert-system role arrives with Kafka; here the test writes
the PENDING ledger row it would write, and the notifier e-mails it.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.uow import SqlUnitOfWork
from stockalert.domain.model import (
    DeliveryStatus,
    Email,
    Notification,
    NotificationKind,
    NotificationRecord,
    Side,
    Ticker,
)
from tests.metrics import http_get
from tests.processes import (
    clean_environ,
    free_port,
    ok,
    run_cli,
    spawn,
    wait_for,
    wait_until_serving,
)
from tests.replay import write_replay

ALICE = "alice@example.com"
PASSWORD = "password123"
START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
PRICES = [185.0] * 30 + [186.0, 187.5]  # a flat prefix while the user is set up
SECRET = "a-token-signing-key-of-at-least-32-bytes"
DEADLINE_S = 30.0

Cli = Callable[..., subprocess.CompletedProcess[str]]


def wait(condition: Callable[[], object], what: str, logs: Path) -> None:
    wait_for(condition, DEADLINE_S, what, logs=sorted(logs.glob("*.log")))


@pytest.fixture
def system(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Five role processes on one database; stopped with SIGTERM by the test, killed after."""
    prices = write_replay(tmp_path / "prices.csv", [{"AAPL": p} for p in PRICES], START)
    commands, queries = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = clean_environ() | {
        "STOCKALERT_DB_URL": f"sqlite:///{tmp_path / 'stockalert.db'}",
        "STOCKALERT_AUTH_SECRET": SECRET,
        "STOCKALERT_GRPC_ADDR": commands,
        "STOCKALERT_QUERY_ADDR": queries,
        "STOCKALERT_PRICE_SOURCE": f"replay:{prices}",
        "STOCKALERT_COLLECT_INTERVAL": "0.2",
        "STOCKALERT_DELIVERY_INTERVAL": "0.2",
        "STOCKALERT_CLEAN_INTERVAL": "0.5",
        "STOCKALERT_OUTBOX_DIR": str(tmp_path / "outbox"),
        "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "cli"),
    }
    ok(run_cli(env, "db", "upgrade"))
    logs = tmp_path / "logs"
    logs.mkdir()
    # Each role's /metrics, /healthz and /readyz on a port of its own.
    metrics = {
        role: f"127.0.0.1:{free_port()}"
        for role in ("command-api", "query-api", "notifier", "cleaner", "collector")
    }

    def role_env(role: str) -> dict[str, str]:
        # The cleaner logs JSON lines (STOCKALERT_LOG_FORMAT), the others key=value text.
        json_logs = {"STOCKALERT_LOG_FORMAT": "json"} if role == "cleaner" else {}
        return env | {"STOCKALERT_METRICS_PORT": metrics[role], **json_logs}

    processes = {
        role: spawn(role_env(role), tmp_path, logs / f"{role}.log", "serve", role)
        for role in ("command-api", "query-api", "notifier", "cleaner")
    }
    processes["collector"] = spawn(
        role_env("collector"),
        tmp_path,
        logs / "collector.log",
        module="stockalert.entrypoints.collector",
    )
    try:
        wait_until_serving(commands, processes["command-api"], timeout=60)
        wait_until_serving(queries, processes["query-api"], timeout=60)
        yield {
            "env": env,
            "processes": processes,
            "logs": logs,
            "outbox": tmp_path / "outbox",
            "metrics": metrics,
        }
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def pending_alert(db_url: str, subscription_id: str, user_id: str) -> str:
    """Write the PENDING row the alert-system writes with a crossing; its id."""
    notification = Notification(
        notification_id=f"{subscription_id}:HIGH:1",
        subscription_id=subscription_id,
        user_id=user_id,
        email=Email(ALICE),
        ticker=Ticker("AAPL"),
        side=Side.HIGH,
        kind=NotificationKind.CROSSING,
        price=187.5,
        threshold=187.0,
        quoted_at=START + timedelta(minutes=len(PRICES) - 1),
        episode=1,
    )
    engine = make_engine(db_url)
    try:
        with SqlUnitOfWork(engine, lambda: datetime.now(UTC)) as uow:
            uow.notifications.add(NotificationRecord(notification, DeliveryStatus.PENDING))
            uow.commit()
    finally:
        engine.dispose()
    return notification.notification_id


def test_each_role_is_its_own_process_and_they_work_together_through_the_database(
    system: dict[str, Any],
) -> None:
    """Commands through command-api, reads through query-api, quotes from the collector,
    an e-mail from the notifier; SIGTERM stops every role with exit 0."""
    env: dict[str, str] = system["env"]

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run_cli(env, *args, stdin=stdin)

    registered = json.loads(
        ok(cli("--json", "register", ALICE, "--password-stdin", stdin=PASSWORD + "\n"))
    )
    watched = json.loads(ok(cli("--json", "watch", "AAPL", "--high", "187")))
    subscription_id = watched["subscription"]["subscription_id"]

    def latest_is_the_last_price() -> bool:
        answer = cli("--json", "latest", "AAPL")
        return answer.returncode == 0 and json.loads(answer.stdout)["value"] == PRICES[-1]

    wait(
        latest_is_the_last_price, "the collector's quotes readable on the query API", system["logs"]
    )
    (listed,) = json.loads(ok(cli("--json", "subscriptions")))["subscriptions"]
    assert listed["subscription_id"] == subscription_id

    notification_id = pending_alert(
        env["STOCKALERT_DB_URL"], subscription_id, registered["user_id"]
    )
    outbox: Path = system["outbox"]
    eml = outbox / (notification_id.replace(":", "_") + ".eml")
    wait(eml.exists, "the notifier's e-mail", system["logs"])

    def notification_is_sent() -> bool:
        notes = json.loads(ok(cli("--json", "notifications"))).get("notifications", [])
        return [n["status"] for n in notes] == ["DELIVERY_STATUS_SENT"]

    wait(notification_is_sent, "the notification SENT on the query API", system["logs"])

    check_endpoints(system["metrics"])

    processes: dict[str, subprocess.Popen[bytes]] = system["processes"]
    for process in processes.values():
        process.send_signal(signal.SIGTERM)
    for role, process in processes.items():
        assert process.wait(timeout=10) == 0, role
        log = (system["logs"] / f"{role}.log").read_text()
        if role == "cleaner":
            lines = [json.loads(line) for line in log.splitlines()]  # every line an object
            events = {(line.get("event"), line.get("role")) for line in lines}
            assert {("started", role), ("stopped", role)} <= events
            continue
        assert f"event=started role={role}" in log
        assert f"event=stopped role={role}" in log
        assert "Traceback" not in log, log
        assert "event=collection_cycle" not in log  # routine cycles log at DEBUG only (-v)
    assert sorted(p.name for p in outbox.glob("*.eml")) == [eml.name]


def grpc_calls(text: str) -> dict[tuple[str, str, str], float]:
    """(role, method, code) -> calls, from a scrape."""
    return {
        (s.labels["role"], s.labels["method"], s.labels["code"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "stockalert_grpc_requests_total"
    }


def check_endpoints(metrics: dict[str, str]) -> None:
    """Every role is alive and ready (its database reachable); the API roles counted the
    calls the CLI made, each under its own role label."""
    for role, address in metrics.items():
        assert http_get(address, "/healthz") == (200, "ok\n"), role
        assert http_get(address, "/readyz") == (200, "ready\n"), role
        status, text = http_get(address, "/metrics")
        assert status == 200, role
        assert "# TYPE stockalert_grpc_requests_total counter" in text, role
    commands = grpc_calls(http_get(metrics["command-api"], "/metrics")[1])
    assert commands[("command-api", "RegisterUser", "OK")] == 1
    assert commands[("command-api", "SetSubscription", "OK")] == 1
    queries = grpc_calls(http_get(metrics["query-api"], "/metrics")[1])
    assert queries[("query-api", "GetLatestValue", "OK")] >= 1
    assert queries[("query-api", "ListNotifications", "OK")] >= 1
    assert not any(role != "query-api" for role, _, _ in queries)

"""`stockalert run` stopped and started again on the same SQLite file keeps its state.

Users, tokens (the auth secret in the state dir), quotes, alert states and the notification
ledger all survive the restart: a crossing mailed before the restart is not mailed again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.processes import (
    clean_environ,
    free_port,
    more_events,
    ok,
    run_cli,
    spawn_run,
    wait_until_serving,
)
from tests.replay import write_replay

EMAIL = "alice@example.com"
PASSWORD = "password123"
START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
FLAT = [187.0] * 20  # below the threshold while the setup finishes
FIRST_RUN = [*FLAT, 191.0]  # crosses HIGH 190 once
SECOND_RUN = [*FIRST_RUN, 192.0, 193.0]  # the same timestamps, then later ones, still above


def write_prices(path: Path, prices: list[float]) -> Path:
    """A replay file with one AAPL quote a minute."""
    return write_replay(path, [{"AAPL": price} for price in prices], START)


@pytest.fixture
def start_run(tmp_path: Path) -> Iterator[Callable[[Path, str], subprocess.Popen[bytes]]]:
    """Start `stockalert run` on tmp_path's database, state dir and outbox (killed at the end)."""
    started: list[subprocess.Popen[bytes]] = []

    def run(prices: Path, address: str) -> subprocess.Popen[bytes]:
        env = clean_environ() | {
            "STOCKALERT_DB_URL": f"sqlite:///{tmp_path / 'stockalert.db'}",
            "STOCKALERT_PRICE_SOURCE": f"replay:{prices}",
            "STOCKALERT_COLLECT_INTERVAL": "0.2",
            "STOCKALERT_GRPC_ADDR": address,
            "STOCKALERT_OUTBOX_DIR": str(tmp_path / "outbox"),
            "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "server-config"),
        }
        # -v: a line per collection cycle, which the test waits on
        server = spawn_run(env, tmp_path, tmp_path / f"run-{len(started) + 1}.log", "-v")
        started.append(server)
        wait_until_serving(address, server, timeout=20)
        return server

    try:
        yield run
    finally:
        for server in started:
            if server.poll() is None:
                server.kill()
                server.wait()


def cli_for(tmp_path: Path, address: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `stockalert ARGS` as a separate process; the token file lives in tmp_path."""
    env = clean_environ() | {
        "STOCKALERT_GRPC_ADDR": address,
        "XDG_CONFIG_HOME": str(tmp_path / "config-alice"),
    }

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run_cli(env, *args, stdin=stdin)

    return run


def wait_for_latest(cli: Callable[..., subprocess.CompletedProcess[str]], value: float) -> None:
    deadline = time.monotonic() + 30
    while True:
        latest = cli("--json", "latest", "AAPL")
        if latest.returncode == 0 and json.loads(latest.stdout)["value"] == value:
            return
        assert time.monotonic() < deadline, f"AAPL never reached {value}: {latest.stdout}"
        time.sleep(0.2)


def emls(outbox: Path) -> list[str]:
    return sorted(p.name for p in outbox.glob("*.eml")) if outbox.is_dir() else []


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 0


def test_a_restart_on_the_same_database_keeps_users_quotes_and_alert_states(
    tmp_path: Path, start_run: Callable[[Path, str], subprocess.Popen[bytes]]
) -> None:
    """After a restart the old token works, quotes remain, and the crossing is not re-mailed."""
    outbox = tmp_path / "outbox"

    # First run: register, watch, the crossing is mailed once, then SIGTERM.
    address = f"127.0.0.1:{free_port()}"
    first = start_run(write_prices(tmp_path / "prices-1.csv", FIRST_RUN), address)
    cli = cli_for(tmp_path, address)
    ok(cli("register", EMAIL, "--password-stdin", stdin=PASSWORD + "\n"))
    ok(cli("watch", "AAPL", "--high", "190"))
    wait_for_latest(cli, FIRST_RUN[-1])
    deadline = time.monotonic() + 10
    while not emls(outbox):
        assert time.monotonic() < deadline, "the crossing was not mailed"
        time.sleep(0.1)
    more_events(tmp_path / "run-1.log", "collection_cycle")  # a whole cycle more: no second mail
    mailed = emls(outbox)
    assert len(mailed) == 1
    stop(first)

    # Second run: same database, state dir and outbox; the replay starts over and goes on.
    address = f"127.0.0.1:{free_port()}"
    second = start_run(write_prices(tmp_path / "prices-2.csv", SECOND_RUN), address)
    cli = cli_for(tmp_path, address)  # same token file as before the restart

    subscriptions = ok(cli("subscriptions"))
    assert "AAPL" in subscriptions
    assert "high=190 (FIRED)" in subscriptions
    average = json.loads(ok(cli("--json", "average", "AAPL", "--count", "3")))
    assert average["ticker"] == "AAPL"
    assert average["samples"] == 3

    wait_for_latest(cli, SECOND_RUN[-1])
    more_events(tmp_path / "run-2.log", "collection_cycle")  # a whole cycle after the last quote
    assert emls(outbox) == mailed  # 191 -> 192 -> 193 is the same episode: no new mail
    notes = json.loads(ok(cli("--json", "notifications"))).get("notifications", [])
    assert [(n["ticker"], n["side"], n["price"], n["status"]) for n in notes] == [
        ("AAPL", "SIDE_HIGH", 191.0, "DELIVERY_STATUS_SENT")
    ]
    assert "FIRED" in ok(cli("subscriptions"))
    stop(second)
    log = (tmp_path / "run-2.log").read_text()
    assert "event=notification_sent" not in log
    assert "Traceback" not in log

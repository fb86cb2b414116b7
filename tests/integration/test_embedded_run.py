"""`stockalert run` end to end: a real server process, CLI processes, .eml files on disk."""

from __future__ import annotations

import email
import email.policy
import json
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.metrics import http_get, scraped
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

ALICE = "alice@example.com"
BOB = "bob@example.com"
PASSWORD = "password123"
START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
FLAT_CYCLES = 40  # quotes inside every threshold: margin for the cycles setup takes
FLAT = {"AAPL": 185.00, "MSFT": 402.00, "GOOG": 175.00}
# Alice: AAPL high 190 (1% re-arm band down to 188.10). Bob: MSFT low 395 (band up to
# 398.95) and GOOG between 150 and 200, which nothing ever crosses.
SCENARIO = [
    {"AAPL": 190.55, "MSFT": 401.00, "GOOG": 176.00},  # AAPL crosses: mail 1
    {"AAPL": 189.80, "MSFT": 394.90, "GOOG": 177.00},  # AAPL inside band; MSFT crosses: mail 2
    {"AAPL": 190.70, "MSFT": 396.00, "GOOG": 178.00},  # both still fired: no mail
    {"AAPL": 187.60, "MSFT": 394.00, "GOOG": 179.00},  # AAPL re-arms; MSFT still fired
    {"AAPL": 191.30, "MSFT": 393.50, "GOOG": 180.00},  # AAPL crosses again: mail 3
    {"AAPL": 191.45, "MSFT": 393.00, "GOOG": 181.00},  # the last row: the replay is done
]
LAST_AAPL = SCENARIO[-1]["AAPL"]


def write_prices(path: Path) -> Path:
    """The replay file: a long flat prefix, then the scenario, one minute per timestamp."""
    return write_replay(path, [FLAT] * FLAT_CYCLES + SCENARIO, START)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A running `stockalert run` over a replay file, writing e-mails to tmp_path/outbox."""
    address, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = clean_environ() | {
        "STOCKALERT_METRICS_PORT": metrics,
        "STOCKALERT_PRICE_SOURCE": f"replay:{write_prices(tmp_path / 'prices.csv')}",
        "STOCKALERT_COLLECT_INTERVAL": "0.3",
        "STOCKALERT_GRPC_ADDR": address,
        "STOCKALERT_OUTBOX_DIR": str(tmp_path / "outbox"),
        "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
        "STOCKALERT_DB_URL": f"sqlite:///{tmp_path / 'data' / 'stockalert.db'}",
        "XDG_CONFIG_HOME": str(tmp_path / "server-config"),
    }
    log = tmp_path / "run.log"
    server = spawn_run(env, tmp_path, log, "-v")  # -v: a line per cycle, waited on below
    try:
        wait_until_serving(address, server, timeout=20)
        yield {
            "address": address,
            "metrics": metrics,
            "server": server,
            "outbox": tmp_path / "outbox",
            "log": log,
        }
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def cli_as(tmp_path: Path, address: str, who: str) -> Callable[..., Any]:
    """Run `stockalert ARGS` as a separate process with its own XDG_CONFIG_HOME."""
    env = clean_environ() | {
        "STOCKALERT_GRPC_ADDR": address,
        "XDG_CONFIG_HOME": str(tmp_path / f"config-{who}"),
    }

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run_cli(env, *args, stdin=stdin)

    return run


def read_eml(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_embedded_run_mails_each_crossing_once_and_stops_cleanly_on_sigterm(
    tmp_path: Path, embedded: dict[str, Any]
) -> None:
    """Two AAPL crossings and one MSFT crossing give exactly three .eml files; SIGTERM exits 0."""
    alice = cli_as(tmp_path, embedded["address"], "alice")
    bob = cli_as(tmp_path, embedded["address"], "bob")
    ok(alice("register", ALICE, "--password-stdin", stdin=PASSWORD + "\n"))
    ok(bob("register", BOB, "--password-stdin", stdin=PASSWORD + "\n"))
    # The replay starts moving with the first subscription; the flat prefix covers the rest.
    ok(alice("watch", "AAPL", "--high", "190"))
    ok(bob("watch", "MSFT", "--low", "395"))
    ok(bob("watch", "GOOG", "--high", "200", "--low", "150"))

    deadline = time.monotonic() + 30
    while True:
        latest = alice("--json", "latest", "AAPL")
        if latest.returncode == 0 and json.loads(latest.stdout)["value"] == LAST_AAPL:
            break
        assert time.monotonic() < deadline, "the replay was not consumed within 30 s"
        time.sleep(0.3)
    more_events(embedded["log"], "collection_cycle")  # a whole cycle after the replay ended

    notes = {
        who: json.loads(ok(cli("--json", "notifications"))).get("notifications", [])
        for who, cli in ((ALICE, alice), (BOB, bob))
    }
    assert sorted((n["ticker"], n["side"], n["price"]) for n in notes[ALICE]) == [
        ("AAPL", "SIDE_HIGH", 190.55),
        ("AAPL", "SIDE_HIGH", 191.30),
    ]
    assert [(n["ticker"], n["side"], n["price"]) for n in notes[BOB]] == [
        ("MSFT", "SIDE_LOW", 394.90)
    ]
    assert all(n["status"] == "DELIVERY_STATUS_SENT" for n in notes[ALICE] + notes[BOB])

    outbox: Path = embedded["outbox"]
    expected = {
        n["notification_id"].replace(":", "_") + ".eml": (who, n)
        for who, mine in notes.items()
        for n in mine
    }
    assert len(expected) == 3
    assert sorted(p.name for p in outbox.iterdir()) == sorted(expected)
    for name, (who, note) in expected.items():
        message = read_eml(outbox / name)
        side = note["side"].removeprefix("SIDE_")
        assert message["To"] == who
        assert note["ticker"] in message["Subject"]
        assert side in message["Subject"]
        assert message["Message-ID"]
        assert message["X-Stockalert-Notification-Id"] == note["notification_id"]
        plain = message.get_body(preferencelist=("plain",))
        assert plain is not None
        text = plain.get_content()
        assert f"{note['price']:.4f}" in text
        assert f"{note['threshold']:.4f}" in text

    # The embedded run's /metrics counted the same: three crossings raised, three sent.
    role = ("role", "embedded")
    assert scraped(embedded["metrics"], "stockalert_alerts_total") == {
        (("kind", "CROSSING"), role, ("side", "HIGH")): 2,
        (("kind", "CROSSING"), role, ("side", "LOW")): 1,
    }
    assert scraped(embedded["metrics"], "stockalert_notifications_total") == {
        (("outcome", "sent"), role): 3
    }
    assert http_get(embedded["metrics"], "/readyz") == (200, "ready\n")

    # Created private under umask 022: the folders 0700, the files 0600.
    private = {
        path: stat.S_IMODE(path.stat().st_mode)
        for path in (
            tmp_path / "state",
            tmp_path / "state" / "auth-secret",
            tmp_path / "data",
            *(tmp_path / "data").iterdir(),  # the database, its -wal and -shm
            outbox,
            *outbox.iterdir(),
        )
    }
    assert len([p for p in private if p.parent == tmp_path / "data"]) == 3, private
    assert {p: mode for p, mode in private.items() if mode not in (0o700, 0o600)} == {}
    assert all((mode == 0o700) == p.is_dir() for p, mode in private.items())

    server: subprocess.Popen[bytes] = embedded["server"]
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 0
    log = embedded["log"].read_text()
    assert "event=started" in log
    assert "event=stopped" in log

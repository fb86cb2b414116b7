"""`stockalert run` mailing over SMTP (aiosmtpd on 127.0.0.1) through an SMTP outage.

The alerts are raised while the SMTP server is down: they stay PENDING, with the error and
the time of the next attempt; once the server is back each is delivered exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.integration.test_embedded_run import (
    ALICE,
    BOB,
    LAST_AAPL,
    PASSWORD,
    cli_as,
    write_prices,
)
from tests.processes import (
    clean_environ,
    free_port,
    more_events,
    ok,
    spawn_run,
    wait_until_serving,
)
from tests.smtp_server import SmtpServer, smtp_environ

# The replay of test_embedded_run: AAPL crosses 190 twice (re-armed in between), MSFT falls
# below 395 once, GOOG rises past 177.5 once. Alice watches all three, Bob MSFT and GOOG:
# six alerts, so that the retries after the outage can send a batch of more than four.
EXPECTED = {
    ALICE: [
        ("AAPL", "SIDE_HIGH", 190.55),
        ("AAPL", "SIDE_HIGH", 191.30),
        ("GOOG", "SIDE_HIGH", 178.00),
        ("MSFT", "SIDE_LOW", 394.90),
    ],
    BOB: [("GOOG", "SIDE_HIGH", 178.00), ("MSFT", "SIDE_LOW", 394.90)],
}
COUNT = sum(len(alerts) for alerts in EXPECTED.values())
PENDING = "DELIVERY_STATUS_PENDING"
SENT = "DELIVERY_STATUS_SENT"
# The replay takes about 20 s (12 s of flat prefix, then each failed SMTP trial sleeps
# through the mailer's own retries); the deliveries after the outage a few seconds.
BUDGET_S = 45.0
Cli = Callable[..., subprocess.CompletedProcess[str]]


@attrs.frozen
class Embedded:
    address: str
    process: subprocess.Popen[bytes]
    smtp: SmtpServer
    log: Path


@pytest.fixture
def embedded_smtp(tmp_path: Path) -> Iterator[Embedded]:
    """`stockalert run` over the replay file, mailing to an SMTP server that is down (its
    port known, nothing listening) until the test starts it."""
    smtp = SmtpServer()
    smtp.start()
    smtp.stop()
    address = f"127.0.0.1:{free_port()}"
    env = clean_environ() | {
        "STOCKALERT_PRICE_SOURCE": f"replay:{write_prices(tmp_path / 'prices.csv')}",
        "STOCKALERT_COLLECT_INTERVAL": "0.3",
        "STOCKALERT_GRPC_ADDR": address,
        "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
        "STOCKALERT_OUTBOX_DIR": str(tmp_path / "outbox"),
        **smtp_environ(smtp, pause_s=2),
        "STOCKALERT_SMTP_BUILD_PROCESSES": "1",
        "STOCKALERT_DELIVERY_INTERVAL": "0.3",
        "XDG_CONFIG_HOME": str(tmp_path / "server-config"),
    }
    log = tmp_path / "run.log"
    process = spawn_run(env, tmp_path, log, "-v")  # -v: a line per delivery pass
    try:
        wait_until_serving(address, process, timeout=20)
        yield Embedded(address, process, smtp, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        smtp.stop()


def notifications(clis: dict[str, Cli]) -> dict[str, list[dict[str, Any]]]:
    """`stockalert --json notifications` of each user."""
    return {
        who: json.loads(ok(cli("--json", "notifications"))).get("notifications", [])
        for who, cli in clis.items()
    }


def crossings(notes: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    return sorted((n["ticker"], n["side"], n["price"]) for n in notes)


def test_alerts_raised_while_smtp_is_down_are_mailed_once_when_it_is_back(
    tmp_path: Path, embedded_smtp: Embedded
) -> None:
    """Six alerts raised during the outage stay PENDING; the server comes back: six messages,
    one per alert and to its owner, none after; SIGTERM exits 0 and says QUIT."""
    smtp = embedded_smtp.smtp
    alice = cli_as(tmp_path, embedded_smtp.address, "alice")
    bob = cli_as(tmp_path, embedded_smtp.address, "bob")
    clis = {ALICE: alice, BOB: bob}
    ok(alice("register", ALICE, "--password-stdin", stdin=PASSWORD + "\n"))
    ok(bob("register", BOB, "--password-stdin", stdin=PASSWORD + "\n"))
    # The replay starts moving with the first subscription; the flat prefix covers the rest.
    ok(alice("watch", "AAPL", "--high", "190"))
    for cli in (alice, bob):
        ok(cli("watch", "MSFT", "--low", "395"))
        ok(cli("watch", "GOOG", "--high", "177.5"))

    # 1. Every crossing happens while the SMTP server is down. One budget for both waits.
    deadline = time.monotonic() + BUDGET_S
    while True:
        latest = alice("--json", "latest", "AAPL")
        if latest.returncode == 0 and json.loads(latest.stdout)["value"] == LAST_AAPL:
            break
        assert time.monotonic() < deadline, "the replay was not consumed in time"
        time.sleep(0.3)

    # 2. They are PENDING. A user's e-mails go out in order: the first that was tried says why
    # it failed and when it is due again; the later ones wait behind it, not tried yet.
    pending = notifications(clis)
    assert {who: crossings(notes) for who, notes in pending.items()} == EXPECTED
    for notes in (pending[ALICE], pending[BOB]):
        assert all(note["status"] == PENDING for note in notes), notes
        tried = [note for note in notes if note.get("last_error")]
        assert tried, notes
        assert all(note["next_attempt_at"] for note in tried), notes
    # The first alert of an outage tries the server; the mailer then pauses, and what it did
    # not try does not count as an attempt (a zero is left out of the JSON).
    tries = [n.get("attempts", 0) for n in pending[ALICE] + pending[BOB]]
    assert tries.count(0) < COUNT, tries
    assert smtp.messages == []
    assert smtp.connections == 0

    # 3. The server comes back on its port: each alert is delivered, once, to its owner.
    smtp.start()
    while True:
        delivered = notifications(clis)
        if all(n["status"] == SENT for notes in delivered.values() for n in notes):
            break
        assert time.monotonic() < deadline, f"not all SENT in time: {delivered}"
        time.sleep(0.3)
    assert {who: crossings(notes) for who, notes in delivered.items()} == EXPECTED
    owner = {n["notification_id"]: who for who, notes in delivered.items() for n in notes}
    assert len(owner) == COUNT
    for note in delivered[ALICE] + delivered[BOB]:
        assert note["attempts"] >= 1, note
        assert "last_error" not in note, note
        assert "next_attempt_at" not in note, note
        assert note["sent_at"], note

    received = smtp.messages
    ids = Counter(r.message["X-Stockalert-Notification-Id"] for r in received)
    assert ids == Counter(owner.keys()), ids  # exactly one message per notification
    for r in received:
        notification_id = r.message["X-Stockalert-Notification-Id"]
        # mail.message.message_id: the notification id, ':' written as '.', then '+' and
        # the correlation id of the quote that raised it (also in its own header)
        local = notification_id.replace(":", ".")
        correlation_id = r.message["X-Stockalert-Correlation-Id"]
        assert correlation_id, r.message
        assert r.message["Message-ID"] == f"<{local}+{correlation_id}@stockalert.invalid>"
        assert r.rcpt_tos == (owner[notification_id],)
        assert r.message["To"] == owner[notification_id]
    assert len({r.message["Message-ID"] for r in received}) == COUNT

    # 4. Nothing more arrives: no retry of what was sent, no duplicate.
    more_events(embedded_smtp.log, "delivery_pass")
    assert len(smtp.messages) == COUNT

    # 5. SIGTERM: a clean exit that says QUIT to the SMTP server.
    process = embedded_smtp.process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert smtp.handler.quits >= 1
    assert len(smtp.messages) == COUNT
    log = embedded_smtp.log.read_text()
    assert "event=notification_deferred" in log
    assert "event=stopped" in log

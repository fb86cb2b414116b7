"""SmtpMailer against a real SMTP server (aiosmtpd on 127.0.0.1), directly and through the bus.

No real waiting: the mailer's backoff `sleep` is a fake that records the delays.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest

from stockalert.adapters.mail.message import build_message, message_id
from stockalert.adapters.mail.smtp import SmtpMailer, SmtpSettings
from stockalert.adapters.memory.fakes import ManualClock
from stockalert.domain.commands import (
    RecordQuotes,
    RegisterUser,
    RetryPendingNotifications,
    SubscriptionSpec,
)
from stockalert.domain.errors import InvalidArgument
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import (
    DeliveryStatus,
    Email,
    Notification,
    NotificationKind,
    Quote,
    Side,
    Ticker,
)
from stockalert.domain.ports import MailPermanentError, MailTemporaryError
from stockalert.domain.views import UserRegistered
from tests.smtp_server import SmtpServer
from tests.unit.helpers import notifications
from tests.wiring import build_container

SENDER = "stockalert <alerts@stockalert.invalid>"
QUOTED_AT = datetime(2026, 1, 2, 15, 30, tzinfo=UTC)


def notification(
    n: int = 1, *, to: str = "alice@example.com", ticker: str = "AAPL", email: Email | None = None
) -> Notification:
    return Notification(
        notification_id=f"sub{n}:HIGH:1",
        subscription_id=f"sub{n}",
        user_id="u1",
        email=email or Email(to),
        ticker=Ticker(ticker),
        side=Side.HIGH,
        kind=NotificationKind.CROSSING,
        price=101.25,
        threshold=100.5,
        quoted_at=QUOTED_AT,
        episode=1,
    )


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def mailer(server: SmtpServer, sleeps: list[float], clock: ManualClock) -> Iterator[SmtpMailer]:
    settings = SmtpSettings("127.0.0.1", server.port, security="none", timeout_s=5.0, pause_s=30)
    mailer = SmtpMailer(
        settings,
        attempts=3,
        backoff_s=0.01,
        sleep=sleeps.append,
        jitter=lambda: 0.5,
        monotonic=lambda: clock.now().timestamp(),
    )
    yield mailer
    mailer.close()


# ----- through the bus -----------------------------------------------------------------------


@pytest.fixture
def bus(mailer: SmtpMailer, clock: ManualClock) -> Iterator[MessageBus]:
    container = build_container(clock=clock, delivery__mailer=mailer)
    yield container.bus()
    container.reset_override()


def register(bus: MessageBus, email: str) -> str:
    reply = bus.handle(
        RegisterUser(f"reg-{email}", email, "correct horse", (SubscriptionSpec("AAPL", 100),))
    )
    assert isinstance(reply, UserRegistered)
    return reply.user_id


def cross(bus: MessageBus) -> None:
    bus.handle(RecordQuotes((Quote(Ticker("AAPL"), 101.0, QUOTED_AT),)))


# ----- content -------------------------------------------------------------------------------


def test_the_received_message_has_every_header_and_both_parts(
    server: SmtpServer, mailer: SmtpMailer
) -> None:
    """The server parses back From, To, Subject, Message-ID, Auto-Submitted, text and HTML."""
    sent = notification()

    mailer.send(sent)

    (received,) = server.messages
    assert received.rcpt_tos == ("alice@example.com",)
    assert received.mail_from == "alerts@stockalert.invalid"
    msg = received.message
    assert msg["From"] == SENDER
    assert msg["To"] == "alice@example.com"
    assert "AAPL" in msg["Subject"]
    assert "HIGH" in msg["Subject"]
    assert msg["Message-ID"] == message_id(sent) == "<sub1.HIGH.1@stockalert.invalid>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"] is not None
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    for part in (text.get_content(), html.get_content()):
        assert "AAPL" in part
        assert "101.2500" in part
        assert "100.5000" in part
    assert "X-Stockalert-Correlation-Id" not in msg  # raised before correlation ids existed


def test_the_correlation_id_is_a_header_and_part_of_the_message_id(
    server: SmtpServer, mailer: SmtpMailer
) -> None:
    """The quote's correlation id arrives in X-Stockalert-Correlation-Id and after the '+' of
    the Message-ID (which stays one per notification: the id is fixed when it is raised)."""
    sent = attrs.evolve(notification(), correlation_id="9f2c41d07a8b4e35b1f0c2d6e8a7b3e1")

    mailer.send(sent)

    (received,) = server.messages
    msg = received.message
    assert msg["X-Stockalert-Correlation-Id"] == "9f2c41d07a8b4e35b1f0c2d6e8a7b3e1"
    assert msg["Message-ID"] == "<sub1.HIGH.1+9f2c41d07a8b4e35b1f0c2d6e8a7b3e1@stockalert.invalid>"
    assert msg["X-Stockalert-Notification-Id"] == "sub1:HIGH:1"


# ----- connection reuse ----------------------------------------------------------------------


def test_a_hundred_messages_go_over_a_single_connection(
    server: SmtpServer, mailer: SmtpMailer
) -> None:
    """100 e-mails open exactly one SMTP connection."""
    for n in range(100):
        mailer.send(notification(n))

    assert len(server.messages) == 100
    assert server.connections == 1
    assert mailer.connections_opened == 1


def test_close_sends_quit(server: SmtpServer, mailer: SmtpMailer) -> None:
    """close() ends the session with QUIT."""
    mailer.send(notification())

    mailer.close()

    assert server.handler.quits == 1
    mailer.close()  # idempotent
    assert server.handler.quits == 1


def test_lanes_send_side_by_side_over_a_connection_each_and_pause_together(
    server: SmtpServer, sleeps: list[float], clock: ManualClock
) -> None:
    """connections=3: lanes() gives this mailer and two siblings, each with its connection;
    an unreachable server seen by one pauses the others (one breaker); close() QUITs all."""
    settings = SmtpSettings(
        "127.0.0.1", server.port, security="none", timeout_s=5.0, pause_s=30, connections=3
    )
    mailer = SmtpMailer(
        settings, backoff_s=0.01, sleep=sleeps.append, monotonic=lambda: clock.now().timestamp()
    )
    lanes = mailer.lanes()
    assert len(lanes) == 3
    assert lanes[0] is mailer
    assert mailer.lanes() == lanes  # the same siblings again
    for n, lane in enumerate(lanes):
        lane.send(notification(n))
    assert server.connections == 3
    assert len(server.messages) == 3

    server.stop()
    with pytest.raises(MailTemporaryError, match="ConnectionRefusedError"):
        lanes[1].send(notification(10))
    with pytest.raises(MailTemporaryError, match="not attempted"):
        lanes[2].send(notification(11))

    server.start()
    clock.advance(30)
    lanes[2].send(notification(12))
    mailer.close()
    assert server.handler.quits == 1  # lane 2's session, the one open after the restart


# ----- temporary and permanent answers -------------------------------------------------------


def test_a_421_then_a_451_then_ok_delivers_the_message_once(
    server: SmtpServer, mailer: SmtpMailer, sleeps: list[float]
) -> None:
    """Two temporary answers are retried with backoff; the message arrives exactly once."""
    server.handler.answer_next("DATA", "421 4.3.0 try later", "451 4.3.0 local error")

    mailer.send(notification())

    assert len(server.messages) == 1
    assert sleeps == [0.01, 0.02]  # two retries, exponential backoff (jitter fixed at 1x)
    assert mailer.connections_opened == 2  # a 421 closes the connection
    assert server.connections == 2


def test_temporary_answers_on_every_attempt_raise_mail_temporary_error(
    server: SmtpServer, mailer: SmtpMailer, sleeps: list[float]
) -> None:
    """Three 451s exhaust the attempts: MailTemporaryError, nothing delivered."""
    server.handler.answer_next("DATA", *["451 4.3.0 local error"] * 3)

    with pytest.raises(MailTemporaryError, match="451"):
        mailer.send(notification())

    assert server.messages == []
    assert sleeps == [0.01, 0.02]


def test_a_550_recipient_raises_mail_permanent_error_without_retry(
    server: SmtpServer, mailer: SmtpMailer, sleeps: list[float]
) -> None:
    """A 550 to RCPT is permanent: MailPermanentError at once."""
    server.handler.answer_next("RCPT", "550 5.1.1 no such mailbox")

    with pytest.raises(MailPermanentError, match="550"):
        mailer.send(notification())

    assert server.messages == []
    assert sleeps == []
    mailer.send(notification(2))  # the connection is still usable
    assert len(server.messages) == 1
    assert mailer.connections_opened == 1


def test_a_550_through_the_bus_is_failed_with_its_reason_and_never_resent(
    server: SmtpServer, bus: MessageBus
) -> None:
    """The ledger records FAILED with the 550 reason; RetryPendingNotifications skips it."""
    user_id = register(bus, "alice@example.com")
    server.handler.answer_next("RCPT", "550 5.1.1 no such mailbox")

    cross(bus)

    (failed,) = notifications(bus, user_id)
    assert failed.status is DeliveryStatus.FAILED
    assert failed.attempts == 1
    assert failed.last_error is not None
    assert "550" in failed.last_error
    assert "no such mailbox" in failed.last_error
    assert bus.handle(RetryPendingNotifications()) == 0
    assert server.messages == []
    assert notifications(bus, user_id) == [failed]


# ----- server down, then up again ------------------------------------------------------------


def test_notifications_stay_pending_while_the_server_is_down_and_go_out_once_it_is_back(
    server: SmtpServer, bus: MessageBus, mailer: SmtpMailer, sleeps: list[float], clock: ManualClock
) -> None:
    """Down: every alert PENDING, and only the first one waited through the quick retries
    (the mailer pauses); back up: once the backoff has passed, each is sent exactly once."""
    users = [register(bus, f"user{n}@example.com") for n in range(5)]
    server.stop()

    cross(bus)

    records = [record for user in users for record in notifications(bus, user)]
    assert len(records) == 5
    assert {r.status for r in records} == {DeliveryStatus.PENDING}
    assert all(r.last_error for r in records)
    # One real attempt; the mailer then paused, and the four it did not try count none.
    assert sorted(r.attempts for r in records) == [0, 0, 0, 0, 1]
    assert sum("not attempted" in (r.last_error or "") for r in records) == 4
    assert all(r.next_attempt_at and r.next_attempt_at > clock.now() for r in records)
    assert sleeps == [0.01, 0.02]  # 3 attempts, 2 backoffs, for the first alert only
    assert server.messages == []

    server.start()
    assert bus.handle(RetryPendingNotifications()) == 0  # no one is due yet
    clock.advance(45)  # past the 30 s pause and every first backoff (30 s x [0.5, 1.5))
    assert bus.handle(RetryPendingNotifications()) == 5

    by_id = Counter(m.message["Message-ID"] for m in server.messages)
    expected = {message_id(r.notification) for r in records}
    assert set(by_id) == expected
    assert set(by_id.values()) == {1}
    sent = [record for user in users for record in notifications(bus, user)]
    assert {r.status for r in sent} == {DeliveryStatus.SENT}
    assert sorted(r.attempts for r in sent) == [1, 1, 1, 1, 2]
    clock.advance(3600)
    assert bus.handle(RetryPendingNotifications()) == 0
    assert len(server.messages) == 5
    assert mailer.connections_opened == 1


def test_while_paused_the_mailer_fails_fast_then_tries_once_and_recovers(
    server: SmtpServer, mailer: SmtpMailer, sleeps: list[float], clock: ManualClock
) -> None:
    """Unreachable: one round of retries, then MailTemporaryError at once for `pause_s`;
    after it one trial goes to the server, and when it is back mail flows again."""
    server.stop()
    with pytest.raises(MailTemporaryError, match="ConnectionRefusedError"):
        mailer.send(notification(1))
    assert sleeps == [0.01, 0.02]

    clock.advance(29)
    with pytest.raises(MailTemporaryError, match="not attempted"):
        mailer.send(notification(2))
    assert sleeps == [0.01, 0.02]  # no new attempt, no waiting

    clock.advance(1)  # the pause is over: a trial, still refused, pauses again
    with pytest.raises(MailTemporaryError, match="ConnectionRefusedError"):
        mailer.send(notification(3))
    assert sleeps == [0.01, 0.02] * 2
    with pytest.raises(MailTemporaryError, match="not attempted"):
        mailer.send(notification(4))

    server.start()
    clock.advance(30)
    mailer.send(notification(5))
    mailer.send(notification(6))
    ids = [m.message["Message-ID"] for m in server.messages]
    assert ids == [message_id(notification(5)), message_id(notification(6))]


def test_a_deferred_recipient_does_not_pause_the_mailer(
    server: SmtpServer, mailer: SmtpMailer, sleeps: list[float]
) -> None:
    """A 451 for one recipient is that message's problem; the next one goes out at once."""
    server.handler.answer_next("RCPT", *["451 4.2.0 greylisted"] * 3)
    with pytest.raises(MailTemporaryError, match="451"):
        mailer.send(notification(1))

    mailer.send(notification(2))
    assert [m.message["Message-ID"] for m in server.messages] == [message_id(notification(2))]


# ----- send_many: messages built in a worker process while the connection sends ------------


def test_send_many_builds_in_a_worker_and_sends_in_order_over_one_connection(
    server: SmtpServer, mailer: SmtpMailer
) -> None:
    """60 e-mails, built by the worker process, arrive in order over one connection; an
    unbuildable one in the middle is a permanent failure and the rest still go out."""
    batch = [notification(n) for n in range(60)]
    batch[30] = notification(30, email=Email("bad@example.com\r\nBcc: victim@example.com"))

    outcomes = list(mailer.send_many(batch))

    assert [o is None for o in outcomes] == [n != 30 for n in range(60)]
    assert isinstance(outcomes[30], MailPermanentError)
    ids = [m.message["Message-ID"] for m in server.messages]
    assert ids == [message_id(n) for i, n in enumerate(batch) if i != 30]
    assert all("victim" not in m.rcpt_tos for m in server.messages)
    assert mailer.connections_opened == 1
    assert server.connections == 1


def test_send_many_stops_sending_where_the_caller_stops_reading(
    server: SmtpServer, mailer: SmtpMailer
) -> None:
    """Each outcome is known before the next message goes out: a caller that stops after
    three (say, its database failed) has sent exactly three."""
    sending = mailer.send_many([notification(n) for n in range(40)])
    assert [next(sending) for _ in range(3)] == [None, None, None]
    sending.close()

    assert len(server.messages) == 3
    mailer.send(notification(99))  # the mailer is still usable
    assert len(server.messages) == 4


def test_send_many_survives_the_loss_of_its_build_worker(
    server: SmtpServer, mailer: SmtpMailer
) -> None:
    """Killed build worker: the batch is built inline instead; nothing is lost or doubled."""
    assert all(o is None for o in mailer.send_many([notification(n) for n in range(10)]))
    pool = mailer._pool
    assert pool is not None
    for process in list(pool._processes.values()):
        process.kill()
        process.join(5)

    outcomes = list(mailer.send_many([notification(n) for n in range(10, 30)]))

    assert outcomes == [None] * 20
    ids = [m.message["Message-ID"] for m in server.messages]
    assert ids == [message_id(notification(n)) for n in range(30)]


def test_a_server_restart_between_messages_is_survived_by_reconnecting(
    server: SmtpServer, mailer: SmtpMailer, sleeps: list[float]
) -> None:
    """A connection dropped by a restart (or an idle timeout) is re-opened at once, without
    waiting; the message is delivered once."""
    mailer.send(notification(1))
    server.stop()
    server.start()

    mailer.send(notification(2))

    ids = [m.message["Message-ID"] for m in server.messages]
    assert ids == [message_id(notification(1)), message_id(notification(2))]
    assert mailer.connections_opened == 2
    assert sleeps == []


# ----- header injection ----------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["a@b.co\r\nBcc: x@y.io", "a@b.co\nBcc: x@y.io"])
def test_an_email_with_a_line_break_cannot_be_parsed(raw: str) -> None:
    """Email.parse refuses CR/LF: an injected Bcc never reaches a notification."""
    with pytest.raises(InvalidArgument):
        Email.parse(raw)


@pytest.mark.parametrize("raw", ["AAPL\r\nBcc: x@y.io", "AAPL\nBcc: x@y.io"])
def test_a_ticker_with_a_line_break_cannot_be_parsed(raw: str) -> None:
    """Ticker.parse refuses CR/LF."""
    with pytest.raises(InvalidArgument):
        Ticker.parse(raw)


@pytest.mark.parametrize(
    "sender", ["a@b.co\r\nBcc: evil@x.io", "a@b.co\nBcc: evil@x.io", "a@b.co\rX: y"]
)
def test_a_sender_with_a_line_break_is_refused_by_the_settings(sender: str) -> None:
    """SmtpSettings raises ValueError for a sender containing CR or LF."""
    with pytest.raises(ValueError, match="line breaks"):
        SmtpSettings("127.0.0.1", 25, sender=sender, security="none")


def test_build_message_refuses_a_sender_with_a_line_break() -> None:
    """build_message itself refuses a From with CR/LF (strict policy)."""
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        build_message(notification(), "a@b.co\r\nBcc: evil@x.io")


def test_a_crafted_recipient_with_a_line_break_is_refused_and_nothing_is_delivered(
    server: SmtpServer, mailer: SmtpMailer
) -> None:
    """An Email built around parse with CR/LF: a permanent failure (FAILED), no recipient."""
    crafted = notification(email=Email("a@b.co\r\nBcc: evil@x.io"))

    with pytest.raises(ValueError, match="linefeed or carriage return"):
        build_message(crafted)
    with pytest.raises(MailPermanentError, match="linefeed or carriage return"):
        mailer.send(crafted)

    assert server.messages == []
    assert server.connections == 0
    mailer.send(notification())
    (received,) = server.messages
    assert received.rcpt_tos == ("alice@example.com",)
    assert received.message["Bcc"] is None


def test_the_build_worker_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL cannot shut the pool down: the worker notices its parent is gone and exits
    instead of living on as an orphan."""
    script = (
        "import os, sys\n"
        "from stockalert.adapters.mail.smtp import SmtpMailer, SmtpSettings\n"
        "mailer = SmtpMailer(SmtpSettings('127.0.0.1', 25, security='none'))\n"
        "pool = mailer._pool_for(100)\n"
        "print(pool.submit(os.getpid).result(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert alive(worker)
    finally:
        parent.kill()
        parent.wait()

    deadline = time.monotonic() + 10
    while alive(worker):
        assert time.monotonic() < deadline, f"worker {worker} outlived its parent"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"

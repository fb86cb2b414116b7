"""Every crash point of the alert path, in process: a crossing is e-mailed once, whatever
step the process dies after (ADR 9 names these points).

A "crash" is an exception that is not a domain or delivery error (SystemExit) escaping from
inside a step, after which the process is gone: a new container starts on the same storage,
as `stockalert run` does after a SIGKILL (load the engine, then send what is PENDING).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from dependency_injector import providers

from stockalert.adapters.memory.storage import MemoryUnitOfWork
from stockalert.containers import Collector
from stockalert.domain.commands import (
    DeleteUser,
    LoadAlerts,
    RecordQuotes,
    RegisterUser,
    RetryPendingNotifications,
    SubscriptionSpec,
)
from stockalert.domain.model import DeliveryStatus, Notification, Quote, Side, Ticker
from stockalert.domain.ports import MailOutcome, MailTemporaryError
from stockalert.domain.views import UserRegistered
from tests.wiring import Storage

AAPL = Ticker("AAPL")


class Crash(SystemExit):
    """The process dies here (not an error any handler catches)."""


def start(storage: Storage, **overrides: Any) -> Any:
    """A process after a (re)start: the engine loaded, what is PENDING sent."""
    container = storage.process(**overrides)
    bus = container.bus()
    bus.handle(LoadAlerts())
    bus.handle(RetryPendingNotifications())
    return container


def register(container: Any, email: str, high: float = 100.0) -> str:
    reply = container.bus().handle(
        RegisterUser(f"r-{email}", email, "password123", (SubscriptionSpec("AAPL", high),))
    )
    assert isinstance(reply, UserRegistered)
    return reply.user_id


def quote(storage: Storage, price: float) -> RecordQuotes:
    storage.clock.advance(60)
    return RecordQuotes((Quote(AAPL, price, storage.clock.now()),))


def sent_ids(storage: Storage) -> list[str]:
    return [n.notification_id for n in storage.mailer.sent]


@pytest.fixture
def storage() -> Storage:
    return Storage()


def test_a_crash_inside_the_alert_transaction_leaves_nothing_and_a_restart_mails_once(
    storage: Storage,
) -> None:
    """Side states, the high-water mark and the PENDING rows are one transaction: a failure
    before its commit leaves the side ARMED and no row; the reload evaluates the quote."""

    class CrashingUow(MemoryUnitOfWork):
        """Dies on the commit of the first transaction that writes a notification row."""

        def commit(self) -> None:
            if storage.store.notifications:
                raise Crash
            super().commit()

    register(start(storage), "ann@example.com")
    crashing = storage.process(core__uow=providers.Factory(CrashingUow, store=storage.store))
    crashing.bus().handle(LoadAlerts())
    with pytest.raises(Crash):
        crashing.bus().handle(quote(storage, 101.0))
    assert storage.store.notifications == {}
    assert {s.status for s in storage.store.alert_states.values()} == {"ARMED"}

    start(storage)

    assert sent_ids(storage) == ["id2:HIGH:1"]


def test_a_crash_after_the_alert_commit_and_before_the_e_mail_mails_once_after_restart(
    storage: Storage,
) -> None:
    """The FIRED side and its PENDING row were committed together; the restart sends it."""

    class DyingMailer:
        def send_many(self, notifications: Sequence[Notification]) -> Iterator[MailOutcome]:
            raise Crash
            yield None  # a generator, like every mailer

    dying = start(storage, delivery__mailer=DyingMailer())
    register(dying, "ann@example.com")
    with pytest.raises(Crash):
        dying.bus().handle(quote(storage, 101.0))
    (row,) = storage.store.notifications.values()
    assert row.status is DeliveryStatus.PENDING
    assert storage.mailer.sent == []

    start(storage)

    assert sent_ids(storage) == ["id2:HIGH:1"]
    assert storage.store.notifications["id2:HIGH:1"].status is DeliveryStatus.SENT


def test_a_crash_after_the_quote_is_stored_and_before_it_is_applied_is_caught_up(
    storage: Storage,
) -> None:
    """A quote stored by a process that never evaluated it (the collector role, or a crash
    between the two transactions) is applied by the next load: once."""
    register(start(storage), "ann@example.com")
    collector = storage.process(Collector)
    collector.bus().handle(quote(storage, 101.0))
    assert storage.mailer.sent == []

    start(storage)
    start(storage)  # and a second restart applies nothing again

    assert sent_ids(storage) == ["id2:HIGH:1"]


def test_a_crash_in_the_middle_of_a_batch_resends_only_the_e_mail_in_flight(
    storage: Storage,
) -> None:
    """Each outcome is committed as it comes: after three e-mails accepted and a crash
    during the fourth, the restart sends the fourth and the rest, not the first three."""

    class MailerDyingAtTheFourth:
        def __init__(self) -> None:
            self.accepted: list[str] = []

        def send_many(self, notifications: Sequence[Notification]) -> Iterator[MailOutcome]:
            for notification in notifications:
                if len(self.accepted) == 3:
                    raise Crash  # the fourth was on the wire when the process died
                self.accepted.append(notification.notification_id)
                yield None

    quiet = start(storage, delivery__mailer=_Refusing())
    for n in range(6):
        register(quiet, f"user{n}@example.com")
    quiet.bus().handle(quote(storage, 101.0))  # six alerts, all PENDING (server refused)
    storage.clock.advance(3600)
    dying_mailer = MailerDyingAtTheFourth()
    dying = storage.process(delivery__mailer=dying_mailer)
    with pytest.raises(Crash):
        dying.bus().handle(RetryPendingNotifications())

    start(storage)

    assert len(dying_mailer.accepted) == 3
    assert not set(dying_mailer.accepted) & set(sent_ids(storage))
    assert len(sent_ids(storage)) == 3
    assert {r.status for r in storage.store.notifications.values()} == {DeliveryStatus.SENT}


class _Refusing:
    """A mail server that answers 451 to everything."""

    def send_many(self, notifications: Sequence[Notification]) -> Iterator[MailOutcome]:
        for _ in notifications:
            yield MailTemporaryError("451 try later")


def test_a_pending_alert_of_a_since_deleted_user_is_dropped_not_retried(
    storage: Storage,
) -> None:
    """A PENDING row whose user is gone is removed by the delivery loop, never sent."""
    container = start(storage, delivery__mailer=_Refusing())
    user_id = register(container, "ann@example.com")
    container.bus().handle(quote(storage, 101.0))
    (row,) = storage.store.notifications.values()
    # The user goes while the alert waits; a row written by a concurrent alert transaction
    # after the deletion is what the delivery loop must drop.
    container.bus().handle(DeleteUser("d1", user_id, storage.clock.now()))
    storage.store.notifications[row.notification.notification_id] = row
    storage.clock.advance(3600)

    start(storage)

    assert storage.mailer.sent == []
    assert storage.store.notifications == {}
    assert row.notification.side is Side.HIGH

"""Delivery of notifications (`domain/handlers/delivery.py`): mail failures, retries with
backoff, batches, alerts for users deleted meanwhile."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stockalert.adapters.memory.fakes import ManualClock, MemoryMailer
from stockalert.adapters.memory.storage import MemoryStore
from stockalert.domain.commands import (
    AssignRecipients,
    DeleteUser,
    DeliverNotifications,
    RetryPendingNotifications,
    RevokeRecipients,
    SubscriptionSpec,
)
from stockalert.domain.events import AlertRaised
from stockalert.domain.handlers.delivery import Lane
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import (
    DeliveryStatus,
    Email,
    Notification,
    NotificationKind,
    RetryPolicy,
    Side,
    Ticker,
)
from stockalert.domain.ports import MailNotAttempted, MailPermanentError, MailTemporaryError
from stockalert.domain.sharding import Shards, shard_of
from tests.unit.helpers import notifications, record, register
from tests.wiring import Storage

# ----- mail failures --------------------------------------------------------------------------


def test_temporary_mail_failure_stays_pending_until_a_retry_sends_it(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
) -> None:
    """A MailTemporaryError leaves the notification PENDING; RetryPending sends it once."""
    user_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    mailer.fail_next(MailTemporaryError("421 try later"))

    record(bus, clock, 1, 101)

    (pending,) = notifications(bus, user_id)
    assert pending.status is DeliveryStatus.PENDING
    assert pending.attempts == 1
    assert pending.last_error == "421 try later"
    assert mailer.sent == []
    delay = RetryPolicy().delay_s(pending.notification.notification_id, 1)
    assert pending.next_attempt_at == clock.now() + timedelta(seconds=delay)

    assert bus.handle(RetryPendingNotifications()) == 0  # not due yet
    clock.advance(delay)
    assert bus.handle(RetryPendingNotifications()) == 1

    (sent,) = notifications(bus, user_id)
    assert sent.status is DeliveryStatus.SENT
    assert sent.attempts == 2
    assert sent.last_error is None
    assert sent.next_attempt_at is None
    assert mailer.sent == [pending.notification]
    assert bus.handle(RetryPendingNotifications()) == 0
    assert len(mailer.sent) == 1


def test_permanent_mail_failure_is_recorded_and_never_retried(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
) -> None:
    """A MailPermanentError marks the notification FAILED with the reason; retries skip it."""
    user_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    mailer.fail_next(MailPermanentError("550 no such mailbox"))

    record(bus, clock, 1, 101)

    (failed,) = notifications(bus, user_id)
    assert failed.status is DeliveryStatus.FAILED
    assert failed.attempts == 1
    assert failed.last_error == "550 no such mailbox"

    assert bus.handle(RetryPendingNotifications()) == 0

    assert mailer.sent == []
    assert notifications(bus, user_id) == [failed]


# ----- retries and backoff --------------------------------------------------------------------


def test_each_failed_attempt_doubles_the_wait_before_the_next(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
) -> None:
    """Backoff: 30 s, 60 s, 120 s ... (times a jitter in [0.5, 1.5)); retrying before the
    next attempt is due neither sends nor counts an attempt."""
    user_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    mailer.fail_next(*[MailTemporaryError("451 later")] * 4)
    record(bus, clock, 1, 101)

    waits = []
    for attempt in range(1, 5):
        (pending,) = notifications(bus, user_id)
        assert pending.attempts == attempt
        assert pending.next_attempt_at is not None
        wait = (pending.next_attempt_at - clock.now()).total_seconds()
        assert 0.5 * 30 * 2 ** (attempt - 1) <= wait < 1.5 * 30 * 2 ** (attempt - 1)
        waits.append(wait)
        clock.advance(wait - 1)
        assert bus.handle(RetryPendingNotifications()) == 0
        assert notifications(bus, user_id)[0].attempts == attempt
        clock.advance(1)
        bus.handle(RetryPendingNotifications())
    (sent,) = notifications(bus, user_id)
    assert sent.status is DeliveryStatus.SENT
    assert sent.attempts == 5
    assert len(mailer.sent) == 1
    assert len(set(waits)) == 4


def test_an_e_mail_the_mailer_did_not_try_is_not_counted_as_an_attempt(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
) -> None:
    """MailNotAttempted (the mailer pauses after an outage): PENDING, attempts unchanged,
    tried again after the first backoff step, never a growing one."""
    user_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    mailer.fail_next(*[MailNotAttempted("not attempted, server unavailable")] * 3)
    record(bus, clock, 1, 101)

    for _ in range(2):
        (pending,) = notifications(bus, user_id)
        assert pending.status is DeliveryStatus.PENDING
        assert pending.attempts == 0
        assert pending.last_error == "not attempted, server unavailable"
        delay = RetryPolicy().delay_s(pending.notification.notification_id, 1)
        assert pending.next_attempt_at == clock.now() + timedelta(seconds=delay)
        clock.advance(delay)
        bus.handle(RetryPendingNotifications())
    clock.advance(60)
    assert bus.handle(RetryPendingNotifications()) == 1
    (sent,) = notifications(bus, user_id)
    assert sent.attempts == 1


def test_the_retry_policy_is_capped_deterministic_and_spread() -> None:
    """Same id and attempt, same delay; never above max_s; different ids do not retry in
    lock-step after an outage."""
    policy = RetryPolicy(base_s=10, max_s=300)
    assert policy.delay_s("a:HIGH:1", 3) == policy.delay_s("a:HIGH:1", 3)
    assert all(policy.delay_s("a:HIGH:1", n) <= 300 for n in range(1, 80))
    assert policy.delay_s("a:HIGH:1", 79) >= 150
    firsts = {round(policy.delay_s(f"s{n}:HIGH:1", 1), 3) for n in range(100)}
    assert len(firsts) > 90
    assert min(firsts) >= 5
    assert max(firsts) < 15
    with pytest.raises(ValueError, match="base_s"):
        RetryPolicy(base_s=10, max_s=5)


def test_retry_sends_every_due_notification_in_batches(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
) -> None:
    """45 pending notifications, batches of 20: one RetryPending sends all 45, once each."""
    mailer.fail_next(*[MailTemporaryError("421 down")] * 45)
    for n in range(45):
        register(bus, f"user{n}@example.com", SubscriptionSpec("AAPL", high_value=100))
    record(bus, clock, 1, 101)
    assert mailer.sent == []
    clock.advance(3600)

    assert bus.handle(RetryPendingNotifications(batch=20)) == 45

    assert len({n.notification_id for n in mailer.sent}) == 45
    assert len(mailer.sent) == 45
    assert bus.handle(RetryPendingNotifications(batch=20)) == 0


def test_retry_stops_at_a_batch_that_failed_entirely(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
) -> None:
    """The server is still down: once the mailer says so (MailNotAttempted: its breaker is
    open) the pass leaves the rest for later instead of failing them one by one; nothing is
    lost."""
    users = [
        register(bus, f"user{n}@example.com", SubscriptionSpec("AAPL", high_value=100))
        for n in range(30)
    ]
    mailer.fail_next(*[MailTemporaryError("421 down")] * 30)
    record(bus, clock, 1, 101)
    clock.advance(3600)
    mailer.fail_next(MailTemporaryError("421 down"), MailNotAttempted("server unavailable"))

    assert bus.handle(RetryPendingNotifications(batch=10)) == 0

    attempts = sorted(notifications(bus, u)[0].attempts for u in users)
    assert attempts == [1] * 29 + [2]  # the unavailable server was not attempted
    clock.advance(3600)
    assert bus.handle(RetryPendingNotifications(batch=10)) == 30
    assert len(mailer.sent) == 30


# ----- deleted users --------------------------------------------------------------------------


def test_an_alert_raised_for_a_since_deleted_user_is_not_sent(
    bus: MessageBus, mailer: MemoryMailer, store: MemoryStore, clock: ManualClock
) -> None:
    """An alert already in flight when its user is deleted is dropped, not e-mailed or stored."""
    user_id = register(bus, "gone@example.com")
    bus.handle(DeleteUser("del-gone", user_id, clock.now()))
    note = Notification(
        notification_id="s9:HIGH:1",
        subscription_id="s9",
        user_id=user_id,
        email=Email("gone@example.com"),
        ticker=Ticker("AAPL"),
        side=Side.HIGH,
        kind=NotificationKind.CROSSING,
        price=101.0,
        threshold=100.0,
        quoted_at=clock.now(),
        episode=1,
    )
    bus.publish(AlertRaised(note))
    assert mailer.sent == []
    assert store.notifications == {}


# ----- order per user, shards of users ----------------------------------------------------------


def test_one_users_emails_go_out_in_order_a_waiting_one_holds_back_the_later(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
) -> None:
    """AAPL's e-mail fails for a while; MSFT crosses meanwhile: its e-mail waits behind
    AAPL's (PENDING, not sent), and once AAPL's is due both go out, AAPL's first."""
    user = register(
        bus,
        "ann@example.com",
        SubscriptionSpec("AAPL", high_value=100),
        SubscriptionSpec("MSFT", high_value=200),
    )
    mailer.fail_next(MailTemporaryError("421 busy"))
    record(bus, clock, 1, 101)  # AAPL crosses: deferred
    record(bus, clock, 2, 150, ticker="MSFT")
    record(bus, clock, 3, 201, ticker="MSFT")  # MSFT crosses: held behind AAPL

    assert mailer.sent == []
    assert [r.status for r in notifications(bus, user)] == [DeliveryStatus.PENDING] * 2
    clock.advance(3600)
    assert bus.handle(RetryPendingNotifications()) == 2
    assert [n.ticker.value for n in mailer.sent] == ["AAPL", "MSFT"]


def test_a_notifier_instance_delivers_only_to_the_users_of_its_shards() -> None:
    """Two instances split the users by shard (as the partitions of to-notifier): each
    retry pass sends its own users' e-mails; revoked shards are left to the other."""
    storage = Storage()
    count = 2
    first = storage.process(delivery__recipients=Shards())
    bus = first.bus()
    failing = storage.mailer
    users = [
        register(bus, f"user{n}@example.com", SubscriptionSpec("AAPL", high_value=100))
        for n in range(6)
    ]
    failing.fail_next(*[MailTemporaryError("421 down")] * 6)
    bus.handle(AssignRecipients(frozenset({0, 1}), count))
    record(bus, storage.clock, 1, 101)  # all six deferred
    bus.handle(RevokeRecipients(frozenset({1})))
    storage.clock.advance(3600)

    bus.handle(RetryPendingNotifications())

    mine = {u for u in users if shard_of(u, count) == 0}
    assert {n.user_id for n in storage.mailer.sent} == mine
    second = storage.process(delivery__recipients=Shards())
    second.bus().handle(AssignRecipients(frozenset({1}), count))
    second.bus().handle(RetryPendingNotifications())
    assert sorted(n.user_id for n in storage.mailer.sent) == sorted(users)


# ----- what a notifier read together ------------------------------------------------------------


def _raised_elsewhere(user_id: str, email: str, ticker: str, minute: int) -> Notification:
    """A notification an alert-system raised (not in this process's ledger yet)."""
    start = ManualClock().now()
    return Notification(
        notification_id=f"sub-{user_id}-{ticker}:HIGH:1",
        subscription_id=f"sub-{user_id}-{ticker}",
        user_id=user_id,
        email=Email(email),
        ticker=Ticker(ticker),
        side=Side.HIGH,
        kind=NotificationKind.CROSSING,
        price=101.0,
        threshold=100.0,
        quoted_at=start + timedelta(minutes=minute),
        episode=1,
    )


def test_a_batch_is_recorded_then_mailed_once_each_every_users_in_order(
    bus: MessageBus, mailer: MemoryMailer, store: MemoryStore
) -> None:
    """Notifications read together (one user's arriving out of order, one twice): each is
    in the ledger and SENT, mailed once, each user's by quote time; the same batch read
    again (a redelivery) mails nothing."""
    ann = register(bus, "ann@example.com")
    bob = register(bus, "bob@example.com")
    batch = (
        _raised_elsewhere(ann, "ann@example.com", "MSFT", 2),
        _raised_elsewhere(bob, "bob@example.com", "AAPL", 1),
        _raised_elsewhere(ann, "ann@example.com", "AAPL", 1),
        _raised_elsewhere(bob, "bob@example.com", "AAPL", 1),  # the same one again
    )

    assert bus.handle(DeliverNotifications(batch)) == 3

    assert [(n.user_id, n.ticker.value) for n in mailer.sent] == [
        (ann, "AAPL"),
        (ann, "MSFT"),
        (bob, "AAPL"),
    ]
    assert {r.status for r in store.notifications.values()} == {DeliveryStatus.SENT}
    assert len(store.notifications) == 3
    assert bus.handle(DeliverNotifications(batch)) == 0
    assert len(mailer.sent) == 3


def test_in_a_batch_a_deferred_e_mail_holds_back_only_its_own_users_later_ones(
    bus: MessageBus, mailer: MemoryMailer, clock: ManualClock
) -> None:
    """Ann's first e-mail fails for now: her second waits behind it, PENDING and untried,
    while Bob's and Cy's go out in the same delivery; later both of Ann's go, in order."""
    ann = register(bus, "ann@example.com")
    bob = register(bus, "bob@example.com")
    cy = register(bus, "cy@example.com")
    mailer.fail_next(MailTemporaryError("421 mailbox busy"))
    batch = (
        _raised_elsewhere(ann, "ann@example.com", "AAPL", 1),
        _raised_elsewhere(ann, "ann@example.com", "MSFT", 2),
        _raised_elsewhere(bob, "bob@example.com", "AAPL", 1),
        _raised_elsewhere(cy, "cy@example.com", "AAPL", 1),
    )

    assert bus.handle(DeliverNotifications(batch)) == 2

    assert [n.user_id for n in mailer.sent] == [bob, cy]
    first, second = sorted(notifications(bus, ann), key=lambda r: r.notification.quoted_at)
    assert (first.status, first.attempts) == (DeliveryStatus.PENDING, 1)
    assert (second.status, second.attempts, second.last_error) == (
        DeliveryStatus.PENDING,
        0,
        None,
    )
    clock.advance(3600)
    assert bus.handle(RetryPendingNotifications()) == 2
    assert [n.ticker.value for n in mailer.sent[2:]] == ["AAPL", "MSFT"]


def test_in_a_batch_an_unavailable_server_stops_the_sending_and_nothing_is_lost(
    bus: MessageBus, mailer: MemoryMailer, clock: ManualClock, store: MemoryStore
) -> None:
    """The mailer does not even try (its server is unreachable): the rest of the batch is
    not offered to it; everything stays PENDING and the next due pass sends it all."""
    users = [register(bus, f"user{n}@example.com") for n in range(4)]
    mailer.fail_next(MailNotAttempted("server unavailable"))
    batch = tuple(
        _raised_elsewhere(u, f"user{n}@example.com", "AAPL", 1) for n, u in enumerate(users)
    )

    assert bus.handle(DeliverNotifications(batch)) == 0

    assert mailer.sent == []
    assert {r.status for r in store.notifications.values()} == {DeliveryStatus.PENDING}
    assert len(store.notifications) == 4
    clock.advance(3600)
    assert bus.handle(RetryPendingNotifications()) == 4
    assert sorted(n.user_id for n in mailer.sent) == sorted(users)


def test_in_a_batch_a_deleted_users_notifications_are_dropped_the_others_sent(
    bus: MessageBus, mailer: MemoryMailer, store: MemoryStore, clock: ManualClock
) -> None:
    ann = register(bus, "ann@example.com")
    gone = register(bus, "gone@example.com")
    bus.handle(DeleteUser("del-gone", gone, clock.now()))
    batch = (
        _raised_elsewhere(gone, "gone@example.com", "AAPL", 1),
        _raised_elsewhere(ann, "ann@example.com", "AAPL", 1),
    )

    assert bus.handle(DeliverNotifications(batch)) == 1

    assert [n.user_id for n in mailer.sent] == [ann]
    assert [r.notification.user_id for r in store.notifications.values()] == [ann]


def test_with_lanes_each_users_e_mails_go_out_on_one_connection_in_order() -> None:
    """Two lanes (two connections): the users are split between them, each user's e-mails
    all on one of them and in order, every e-mail once, every outcome recorded."""
    storage = Storage()
    other = MemoryMailer()
    process = storage.process()
    process.delivery.lanes.override([Lane(other, process.core.uow)])
    bus = process.bus()
    users = [register(bus, f"user{n}@example.com") for n in range(8)]
    batch = tuple(
        _raised_elsewhere(u, f"user{n}@example.com", ticker, minute)
        for n, u in enumerate(users)
        for ticker, minute in (("MSFT", 2), ("AAPL", 1))
    )

    assert bus.handle(DeliverNotifications(batch)) == 16

    for mailer in (storage.mailer, other):
        assert mailer.sent, "a lane sent nothing"
        for user in {n.user_id for n in mailer.sent}:
            mine = [n.ticker.value for n in mailer.sent if n.user_id == user]
            assert mine == ["AAPL", "MSFT"]
    assert not {n.user_id for n in storage.mailer.sent} & {n.user_id for n in other.sent}
    assert {r.status for r in storage.store.notifications.values()} == {DeliveryStatus.SENT}

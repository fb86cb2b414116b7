"""Delivery: e-mailing notifications through the notification ledger, once each, in order.

A notification is a PENDING row of the ledger before any e-mail goes out (the alert engine
writes it in the transaction of the state change that raised it; a notifier that hears of
one it has no row for adds it first). Each attempt's outcome is recorded in its own
transaction as soon as the mailer reports it: SENT, FAILED (permanent), or still PENDING
with the time of its next attempt. A crash between the server's "250" and that commit can
resend only the one e-mail in flight, byte-identical, same Message-ID.

One user's e-mails go out in order (by quote time, ticker, id): a user's PENDING notifications
are sent from the first, and one waiting for its backoff holds back the later ones. A
notifier instance sends only to the users of its shards (`recipients`: the partitions of
to-notifier it was assigned; every user in the embedded run), and its deliveries run one
at a time (`serial`): the delivery of a fresh notification, the retry pass and a change of
shards never overlap, so no two of them send the same row.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, wait
from datetime import datetime, timedelta
from functools import partial

import attrs

from stockalert.domain.commands import (
    AssignRecipients,
    DeliverNotifications,
    RetryPendingNotifications,
    RevokeRecipients,
)
from stockalert.domain.events import AlertRaised
from stockalert.domain.model import DeliveryStatus, Notification, NotificationRecord, RetryPolicy
from stockalert.domain.ports import (
    NO_TELEMETRY,
    Clock,
    Mailer,
    MailNotAttempted,
    MailOutcome,
    MailPermanentError,
    MailTemporaryError,
    Telemetry,
    UnitOfWork,
)
from stockalert.domain.sharding import Shards, shard_of

log = logging.getLogger(__name__)
USER_BATCH = 100  # a user's PENDING notifications read (and sent) per round


@attrs.frozen
class Lane:
    """A connection sending beside the delivery's own: its mailer, and the units of work
    recording its outcomes (`Delivery.lanes`)."""

    mailer: Mailer
    uow: Callable[[], UnitOfWork]


@attrs.frozen
class Delivery:
    """What every delivery handler uses. With `lanes`, the users' e-mails are split among
    the delivery's mailer and the lanes' (each user's on one, by the user's shard), sent side
    by side by `pool`, each outcome still recorded as it comes."""

    mailer: Mailer
    clock: Clock
    retry: RetryPolicy
    serial: threading.Lock
    recipients: Shards
    lanes: Sequence[Lane] = ()
    pool: Executor | None = None
    telemetry: Telemetry = NO_TELEMETRY


def deliver_notification(event: AlertRaised, uow: UnitOfWork, *, delivery: Delivery) -> None:
    """A notification was raised in this process: as `deliver_notifications` of one."""
    deliver_notifications(DeliverNotifications((event.notification,)), uow, delivery=delivery)


def deliver_notifications(cmd: DeliverNotifications, uow: UnitOfWork, *, delivery: Delivery) -> int:
    """Notifications heard of (read from to-notifier, or raised here): the ledger gets those
    it does not have (one transaction), then their users' due e-mails go out, each user's in
    order (from the first PENDING one: an earlier one waiting for its backoff holds them
    back). Returns how many were sent."""
    with delivery.serial:
        waiting = _into_ledger(cmd.notifications, uow, delivery)
        outcomes = _deliver_users(waiting, uow, delivery)
    return outcomes.count(None)


def retry_pending_notifications(
    cmd: RetryPendingNotifications, uow: UnitOfWork, *, delivery: Delivery
) -> int:
    """Deliver the due PENDING notifications of this process's users, each user's in order,
    `cmd.batch` users at a time; returns how many got sent. Stops early when the mailer says
    the server is unavailable: the rest would fail the same way, and they stay PENDING until
    their backoff has passed."""
    sent, users, after = 0, 0, None
    try:
        while True:
            with uow:
                page = uow.notifications.due_users(delivery.clock.now(), after, cmd.batch)
            with delivery.serial:
                mine = [u for u in page if delivery.recipients.owns(u)]  # not revoked meanwhile
                outcomes = _deliver_users(mine, uow, delivery)
            users += len(mine)
            sent += outcomes.count(None)
            if any(isinstance(o, MailNotAttempted) for o in outcomes):
                return sent
            if len(page) < cmd.batch:
                return sent
            after = page[-1]
    finally:
        # One line per pass, DEBUG: routine, but what a test or an operator with -v waits on.
        log.debug("event=delivery_pass users=%d sent=%d", users, sent)


def assign_recipients(cmd: AssignRecipients, uow: UnitOfWork, *, delivery: Delivery) -> None:
    """Deliver to the users of these shards from now on (partitions assigned)."""
    with delivery.serial:
        delivery.recipients.assign(cmd.shards, cmd.shard_count)


def revoke_recipients(cmd: RevokeRecipients, uow: UnitOfWork, *, delivery: Delivery) -> None:
    """Stop delivering to the users of these shards; once this returns, no delivery to one of
    them is in flight here (the instance they go to may start at once)."""
    with delivery.serial:
        delivery.recipients.revoke(cmd.shards)


def _into_ledger(
    notifications: Sequence[Notification], uow: UnitOfWork, delivery: Delivery
) -> list[str]:
    """Add the notifications the ledger does not have, PENDING (one transaction); the users
    with one of them still PENDING, in the order they first appear."""
    with uow:
        user_ids = {n.user_id for n in notifications}
        present = uow.users.existing(user_ids)
        gone = sorted(user_ids - present)
        for user_id in gone:
            _drop_for_deleted_user(uow, user_id)
        mine = [n for n in notifications if n.user_id in present]
        known = uow.notifications.get_many([n.notification_id for n in mine])
        now = delivery.clock.now()
        fresh = {
            n.notification_id: NotificationRecord(n, DeliveryStatus.PENDING, created_at=now)
            for n in mine
            if n.notification_id not in known  # raised elsewhere: the ledger row comes first
        }
        if fresh or gone:
            uow.notifications.add_new(list(fresh.values()))
            uow.commit()
    waiting: dict[str, None] = {}
    for notification in mine:
        record = known.get(notification.notification_id)
        if record is not None and record.status is not DeliveryStatus.PENDING:
            log.debug(
                "event=notification_done_already notification_id=%s status=%s",
                notification.notification_id,
                record.status.value,
            )
            continue
        waiting[notification.user_id] = None
    return list(waiting)


def _deliver_users(
    user_ids: Sequence[str], uow: UnitOfWork, delivery: Delivery
) -> list[MailOutcome]:
    """Send these users' PENDING notifications, each user's in order while they are due,
    recording each outcome as it comes; a user's e-mails stop at one that stays PENDING (the
    later ones wait behind it), and all stop when the mailer did not even try."""
    outcomes: list[MailOutcome] = []
    users = list(user_ids)
    while users:
        with uow:
            present = uow.users.existing(users)
            for user_id in users:
                if user_id not in present:
                    _drop_for_deleted_user(uow, user_id)
            if len(present) < len(users):
                uow.commit()
            queues = uow.notifications.pending_of_users(present, USER_BATCH)
        now = delivery.clock.now()
        due = {
            u: list(itertools.takewhile(partial(_is_due, now=now), queues.get(u, [])))
            for u in users
            if u in present
        }
        if not any(due.values()):
            break
        done, held, stopped = _deliver_side_by_side(due, uow, delivery)
        outcomes += done
        if stopped:
            break
        # A user whose whole due run went out and whose queue was full has more to send.
        users = [u for u, run in due.items() if u not in held and len(run) == USER_BATCH]
    return outcomes


def _is_due(record: NotificationRecord, now: datetime) -> bool:
    return record.next_attempt_at is None or record.next_attempt_at <= now


def _drop_for_deleted_user(uow: UnitOfWork, user_id: str) -> None:
    """The user is gone, and their data with them: their alerts are not sent, nor kept."""
    for record in uow.notifications.pending_of(user_id, 1_000_000):
        uow.notifications.delete(record.notification.notification_id)
    log.info("event=notification_dropped reason=user_deleted user_id=%s", user_id)


Sent = tuple[list[MailOutcome], set[str], bool]


def _deliver_side_by_side(
    due: dict[str, list[NotificationRecord]], uow: UnitOfWork, delivery: Delivery
) -> Sent:
    """`_deliver` of each user's run, on the lane of the user's shard (all on the delivery's
    own mailer without lanes); returns once every lane is done."""
    count = 1 + len(delivery.lanes)
    split: list[list[NotificationRecord]] = [[] for _ in range(count)]
    for user_id, run in due.items():
        split[shard_of(user_id, count) if count > 1 else 0].extend(run)
    futures: list[Future[Sent]] = []
    if delivery.pool is not None:
        futures = [
            delivery.pool.submit(_deliver_on, split[n], lane, delivery)
            for n, lane in enumerate(delivery.lanes, start=1)
            if split[n]
        ]
    results: list[Sent] = []
    try:
        if split[0]:
            results.append(_deliver(split[0], uow, delivery.mailer, delivery))
    finally:
        wait(futures)  # nothing left in flight, whatever happened here
    results += [future.result() for future in futures]
    outcomes = [outcome for done, _, _ in results for outcome in done]
    held = {user for _, users, _ in results for user in users}
    return outcomes, held, any(stopped for _, _, stopped in results)


def _deliver_on(records: list[NotificationRecord], lane: Lane, delivery: Delivery) -> Sent:
    return _deliver(records, lane.uow(), lane.mailer, delivery)


def _deliver(
    records: list[NotificationRecord], uow: UnitOfWork, mailer: Mailer, delivery: Delivery
) -> Sent:
    """Send `records` (grouped by user, each user's in order) through the mailer and record
    each outcome as it comes: SENT, FAILED with the reason, or still PENDING with the error
    and the time of its next attempt. After one that stays PENDING, that user's later
    records are not sent (the others go on, in a new mailer call); after one the mailer did
    not try, nothing more is sent. Returns the outcomes, the users held back, and whether
    sending stopped."""
    outcomes: list[MailOutcome] = []
    held: set[str] = set()
    remaining = records
    while remaining:
        sending = mailer.send_many([r.notification for r in remaining])
        after: list[NotificationRecord] | None = None
        count = 0
        try:
            for index, (record, outcome) in enumerate(zip(remaining, sending, strict=False)):
                count += 1
                outcomes.append(outcome)
                # One commit per outcome: a crash after the server accepted a message and
                # before this commit resends that message only, never a batch.
                now = delivery.clock.now()
                updated = _after_attempt(record, outcome, now, delivery.retry)
                _store(updated, uow)
                if isinstance(outcome, MailNotAttempted):
                    return outcomes, held, True
                delivery.telemetry.delivery_attempted(updated, now)
                if isinstance(outcome, MailTemporaryError):
                    held.add(record.notification.user_id)
                    after = [
                        r for r in remaining[index + 1 :] if r.notification.user_id not in held
                    ]
                    break
        finally:
            close = getattr(sending, "close", None)
            if close is not None:
                close()  # a generator stops sending here
        if after is None:
            if count < len(remaining):
                raise RuntimeError(f"the mailer gave {count} outcomes for {len(remaining)} e-mails")
            break
        remaining = after
    return outcomes, held, False


def _after_attempt(
    record: NotificationRecord, outcome: MailOutcome, now: datetime, retry: RetryPolicy
) -> NotificationRecord:
    notification = record.notification
    tried = not isinstance(outcome, MailNotAttempted)
    attempts = record.attempts + 1 if tried else record.attempts
    if outcome is None:
        status, error, next_at = DeliveryStatus.SENT, None, None
    elif isinstance(outcome, MailPermanentError):
        status, error, next_at = DeliveryStatus.FAILED, str(outcome), None
    else:
        delay = timedelta(seconds=retry.delay_s(notification.notification_id, max(attempts, 1)))
        status, error, next_at = DeliveryStatus.PENDING, str(outcome), now + delay
    log.log(
        logging.INFO if status is DeliveryStatus.SENT else logging.WARNING,
        "event=notification_%s notification_id=%s to=%s ticker=%s side=%s attempts=%d "
        "error=%r next_attempt_at=%s correlation_id=%s",
        {"SENT": "sent", "PENDING": "deferred", "FAILED": "failed"}[status.value],
        notification.notification_id,
        notification.email,
        notification.ticker,
        notification.side,
        attempts,
        error,
        next_at.isoformat() if next_at else "-",
        notification.correlation_id or "-",
    )
    return attrs.evolve(
        record,
        status=status,
        attempts=attempts,
        last_error=error,
        sent_at=now if status is DeliveryStatus.SENT else None,
        next_attempt_at=next_at,
    )


def _store(updated: NotificationRecord, uow: UnitOfWork) -> None:
    with uow:
        uow.notifications.update(updated)  # changes nothing if the user was deleted meanwhile
        uow.commit()

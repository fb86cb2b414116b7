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
from datetime import datetime, timedelta
from functools import partial

import attrs

from stockalert.domain.commands import (
    AssignRecipients,
    RetryPendingNotifications,
    RevokeRecipients,
)
from stockalert.domain.events import AlertRaised
from stockalert.domain.model import DeliveryStatus, NotificationRecord, RetryPolicy
from stockalert.domain.ports import (
    Clock,
    Mailer,
    MailNotAttempted,
    MailOutcome,
    MailPermanentError,
    MailTemporaryError,
    UnitOfWork,
)
from stockalert.domain.sharding import Shards

log = logging.getLogger(__name__)
USER_BATCH = 100  # a user's PENDING notifications read (and sent) per round


@attrs.frozen
class Delivery:
    """What every delivery handler uses."""

    mailer: Mailer
    clock: Clock
    retry: RetryPolicy
    serial: threading.Lock
    recipients: Shards


def deliver_notification(event: AlertRaised, uow: UnitOfWork, *, delivery: Delivery) -> None:
    """A notification was raised here or read from to-notifier: make sure the ledger has it,
    then send its user's due e-mails in order (this one, unless an earlier one waits)."""
    notification = event.notification
    with delivery.serial:
        with uow:
            if uow.users.get(notification.user_id) is None:
                _drop_for_deleted_user(uow, notification.user_id)
                uow.commit()
                return
            record = uow.notifications.get(notification.notification_id)
            if record is None:
                # Raised elsewhere and not in the ledger (yet): the ledger row comes first.
                record = NotificationRecord(
                    notification, DeliveryStatus.PENDING, created_at=delivery.clock.now()
                )
                uow.notifications.add(record)
                uow.commit()
            elif record.status is not DeliveryStatus.PENDING:
                log.debug(
                    "event=notification_done_already notification_id=%s status=%s",
                    notification.notification_id,
                    record.status.value,
                )
                return
        _deliver_user(notification.user_id, uow, delivery)


def retry_pending_notifications(
    cmd: RetryPendingNotifications, uow: UnitOfWork, *, delivery: Delivery
) -> int:
    """Deliver the due PENDING notifications of this process's users, each user's in order;
    returns how many got sent. Stops early when the mailer says the server is unavailable:
    the rest would fail the same way, and they stay PENDING until their backoff has passed."""
    sent, users, after = 0, 0, None
    try:
        while True:
            with uow:
                page = uow.notifications.due_users(delivery.clock.now(), after, cmd.batch)
            for user_id in page:
                if not delivery.recipients.owns(user_id):
                    continue
                with delivery.serial:
                    if not delivery.recipients.owns(user_id):
                        continue  # revoked meanwhile
                    outcomes = _deliver_user(user_id, uow, delivery)
                users += 1
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


def _deliver_user(user_id: str, uow: UnitOfWork, delivery: Delivery) -> list[MailOutcome]:
    """Send the user's PENDING notifications in order while they are due, recording each
    outcome as it comes; stop at one that stays PENDING (the later ones wait behind it)."""
    outcomes: list[MailOutcome] = []
    while True:
        with uow:
            if uow.users.get(user_id) is None:
                _drop_for_deleted_user(uow, user_id)
                uow.commit()
                return outcomes
            queue = uow.notifications.pending_of(user_id, USER_BATCH)
        due = list(itertools.takewhile(partial(_is_due, now=delivery.clock.now()), queue))
        if not due:
            return outcomes
        done = _deliver(due, uow, delivery)
        outcomes += done
        if len(done) < len(due) or len(queue) < USER_BATCH:
            return outcomes  # held back by a temporary failure, or the user's queue is empty


def _is_due(record: NotificationRecord, now: datetime) -> bool:
    return record.next_attempt_at is None or record.next_attempt_at <= now


def _drop_for_deleted_user(uow: UnitOfWork, user_id: str) -> None:
    """The user is gone, and their data with them: their alerts are not sent, nor kept."""
    for record in uow.notifications.pending_of(user_id, 1_000_000):
        uow.notifications.delete(record.notification.notification_id)
    log.info("event=notification_dropped reason=user_deleted user_id=%s", user_id)


def _deliver(
    records: list[NotificationRecord], uow: UnitOfWork, delivery: Delivery
) -> list[MailOutcome]:
    """Send `records` in one mailer call and record each outcome as it comes: SENT, FAILED
    with the reason, or still PENDING with the error and the time of its next attempt. Stops
    after the first that stays PENDING: the records after it are not sent."""
    outcomes: list[MailOutcome] = []
    sending = delivery.mailer.send_many([r.notification for r in records])
    try:
        for record, outcome in zip(records, sending, strict=False):
            outcomes.append(outcome)
            # One commit per outcome: a crash after the server accepted a message and before
            # this commit resends that message only, never a batch.
            updated = _after_attempt(record, outcome, delivery.clock.now(), delivery.retry)
            _store(updated, uow)
            if isinstance(outcome, MailTemporaryError):
                break
    finally:
        close = getattr(sending, "close", None)
        if close is not None:
            close()  # a generator stops sending here
    held = bool(outcomes) and isinstance(outcomes[-1], MailTemporaryError)
    if len(outcomes) < len(records) and not held:
        raise RuntimeError(f"the mailer gave {len(outcomes)} outcomes for {len(records)} e-mails")
    return outcomes


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
        "error=%r next_attempt_at=%s",
        {"SENT": "sent", "PENDING": "deferred", "FAILED": "failed"}[status.value],
        notification.notification_id,
        notification.email,
        notification.ticker,
        notification.side,
        attempts,
        error,
        next_at.isoformat() if next_at else "-",
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

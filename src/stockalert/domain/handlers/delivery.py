"""Delivery: e-mailing notifications through the notification ledger, once each.

A notification is a PENDING row of the ledger before any e-mail goes out (the alert engine
writes it in the transaction of the state change that raised it). Each attempt's outcome is
recorded in its own transaction as soon as the mailer reports it: SENT, FAILED (permanent),
or still PENDING with the time of its next attempt. A crash between the server's "250" and
that commit can resend only the one e-mail in flight, byte-identical, same Message-ID.

Deliveries of one process run one at a time (`serial`): the immediate delivery of a fresh
alert and the loop over due PENDING rows never pick the same row at once.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

import attrs

from stockalert.domain.commands import RetryPendingNotifications
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

log = logging.getLogger(__name__)


def deliver_notification(
    event: AlertRaised,
    uow: UnitOfWork,
    *,
    mailer: Mailer,
    clock: Clock,
    retry: RetryPolicy,
    serial: threading.Lock,
) -> None:
    """Send a fresh alert now, once: only while its ledger row is PENDING and due."""
    notification = event.notification
    with serial:
        with uow:
            if uow.users.get(notification.user_id) is None:
                _drop_for_deleted_user(uow, notification.notification_id)
                uow.commit()
                return
            record = uow.notifications.get(notification.notification_id)
            if record is None:
                # Raised elsewhere (another process): the ledger row comes first.
                record = NotificationRecord(
                    notification, DeliveryStatus.PENDING, created_at=clock.now()
                )
                uow.notifications.add(record)
                uow.commit()
            elif record.status is not DeliveryStatus.PENDING:
                log.info(
                    "event=notification_duplicate notification_id=%s status=%s",
                    notification.notification_id,
                    record.status,
                )
                return
            elif record.next_attempt_at is not None and record.next_attempt_at > clock.now():
                return  # waiting for its backoff: the retry loop sends it when due
        _deliver([record], uow, mailer, clock, retry)


def retry_pending_notifications(
    cmd: RetryPendingNotifications,
    uow: UnitOfWork,
    *,
    mailer: Mailer,
    clock: Clock,
    retry: RetryPolicy,
    serial: threading.Lock,
) -> int:
    """Deliver every due PENDING notification; returns how many got sent.

    Stops early when a whole batch failed temporarily: the server is down, and the rest
    would fail the same way; they stay PENDING until their backoff has passed.
    """
    tried: set[str] = set()
    with serial:
        try:
            return _send_due(cmd, uow, mailer, clock, retry, tried)
        finally:
            # One line per pass, DEBUG: routine, but what a test or an operator with -v waits on.
            log.debug("event=delivery_pass tried=%d", len(tried))


def _send_due(
    cmd: RetryPendingNotifications,
    uow: UnitOfWork,
    mailer: Mailer,
    clock: Clock,
    retry: RetryPolicy,
    tried: set[str],
) -> int:
    """Batches of due PENDING notifications until none is due or a batch failed entirely."""
    sent = 0
    while True:
        with uow:
            due = uow.notifications.pending(clock.now(), cmd.batch)
            live = []
            for record in due:
                if uow.users.get(record.notification.user_id) is None:
                    _drop_for_deleted_user(uow, record.notification.notification_id)
                else:
                    live.append(record)
            uow.commit()
        batch = [r for r in live if r.notification.notification_id not in tried]
        if not batch:
            if len(due) == cmd.batch and len(live) < len(due):
                continue  # the batch was all dropped rows: there may be more due
            return sent  # nothing due, or only what this call already tried (no backoff)
        tried.update(r.notification.notification_id for r in batch)
        outcomes = _deliver(batch, uow, mailer, clock, retry)
        sent += outcomes.count(None)
        if all(isinstance(o, MailTemporaryError) for o in outcomes) or len(due) < cmd.batch:
            return sent


def _drop_for_deleted_user(uow: UnitOfWork, notification_id: str) -> None:
    """The user is gone, and their data with them: the alert is not sent, nor kept."""
    if uow.notifications.get(notification_id) is not None:
        uow.notifications.delete(notification_id)
    log.info("event=notification_dropped reason=user_deleted notification_id=%s", notification_id)


def _deliver(
    records: list[NotificationRecord],
    uow: UnitOfWork,
    mailer: Mailer,
    clock: Clock,
    retry: RetryPolicy,
) -> list[MailOutcome]:
    """Send `records` in one mailer call and record each outcome as it comes: SENT, FAILED
    with the reason, or still PENDING with the error and the time of its next attempt."""
    outcomes: list[MailOutcome] = []
    sending = mailer.send_many([r.notification for r in records])
    try:
        for record, outcome in zip(records, sending, strict=False):
            outcomes.append(outcome)
            # One commit per outcome: a crash after the server accepted a message and before
            # this commit resends that message only, never a batch.
            _store(_after_attempt(record, outcome, clock.now(), retry), uow)
    finally:
        close = getattr(sending, "close", None)
        if close is not None:
            close()  # a generator stops sending here if recording failed
    if len(outcomes) != len(records):
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

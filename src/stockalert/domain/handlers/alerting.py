"""Quotes through the alert engine: where a price update becomes notifications.

The crossing itself is detected in `domain/alerting/engine.py` (semantics in `rules.py`);
`AlertTracker` keeps that engine in step with storage. These handlers connect it to the bus.
"""

from __future__ import annotations

import logging

from stockalert.domain.alerting.tracker import AlertTracker
from stockalert.domain.commands import ApplyQuotes, DropAlerts, LoadAlerts
from stockalert.domain.events import AlertRaised, PriceUpdated, SubscriptionRemoved, SubscriptionSet
from stockalert.domain.ports import NO_TELEMETRY, Clock, Telemetry, UnitOfWork

log = logging.getLogger(__name__)


def apply_price_update(
    event: PriceUpdated,
    uow: UnitOfWork,
    *,
    alerts: AlertTracker,
    clock: Clock,
    telemetry: Telemetry = NO_TELEMETRY,
) -> None:
    """Run the quote through the alert engine; persist changed sides and PENDING
    notifications in one transaction, raise an AlertRaised per notification."""
    alerts.apply(event.quote, uow, clock.now())
    telemetry.quotes_applied(1)


def apply_quotes(
    cmd: ApplyQuotes,
    uow: UnitOfWork,
    *,
    alerts: AlertTracker,
    clock: Clock,
    telemetry: Telemetry = NO_TELEMETRY,
) -> None:
    """A batch of quotes read from to-alert-system: `apply_price_update` for each, in order,
    in one transaction."""
    alerts.apply_many(cmd.quotes, uow, clock.now())
    telemetry.quotes_applied(len(cmd.quotes))


def report_alert(event: AlertRaised, uow: UnitOfWork, *, telemetry: Telemetry) -> None:
    """A committed notification, logged with its quote's correlation id and counted (by side
    and kind)."""
    note = event.notification
    log.info(
        "event=alert_raised notification_id=%s kind=%s ticker=%s side=%s price=%s threshold=%s "
        "quoted_at=%s correlation_id=%s",
        note.notification_id,
        note.kind,
        note.ticker,
        note.side,
        note.price,
        note.threshold,
        note.quoted_at.isoformat(),
        note.correlation_id or "-",
    )
    telemetry.alert_raised(note)


def index_subscription(event: SubscriptionSet, uow: UnitOfWork, *, alerts: AlertTracker) -> None:
    """Keep the engine's index in step with the write model (read from it: the truth)."""
    alerts.refresh(event.subscription, uow)


def unindex_subscription(
    event: SubscriptionRemoved, uow: UnitOfWork, *, alerts: AlertTracker
) -> None:
    """Drop a removed subscription from the engine."""
    alerts.remove(event.subscription_id)


def load_alerts(cmd: LoadAlerts, uow: UnitOfWork, *, alerts: AlertTracker, clock: Clock) -> None:
    """Load the engine from storage (all tickers, or start owning the tickers of
    `cmd.shards`) and apply the stored quotes after each ticker's high-water mark: what a
    crash left unapplied."""
    if cmd.shards is None:
        alerts.reload(uow, clock.now())
    else:
        alerts.assign(cmd.shards, cmd.shard_count, uow, clock.now())


def drop_alerts(cmd: DropAlerts, uow: UnitOfWork, *, alerts: AlertTracker) -> None:
    """Stop evaluating the tickers of `cmd.shards` (their partitions went elsewhere)."""
    alerts.revoke(cmd.shards)

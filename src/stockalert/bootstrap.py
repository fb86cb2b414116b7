"""Binds handlers to their dependencies, one handler set per use case, and builds a bus.

A role's bus holds the sets that role runs (the collector: `collection`; the command API:
`authentication` and `accounts`; ...); the embedded run's bus holds them all, so that events
flow between them in process. No DI framework here: `containers.py` calls these.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Protocol

from stockalert.domain.alerting.tracker import AlertTracker
from stockalert.domain.commands import (
    ApplyQuotes,
    AssignRecipients,
    CleanUp,
    CollectPrices,
    DeleteUser,
    DeliverNotifications,
    DropAlerts,
    LoadAlerts,
    LoginUser,
    LogoutUser,
    RecordQuotes,
    RegisterUser,
    RemoveSubscription,
    RetryPendingNotifications,
    RevokeRecipients,
    SetSubscription,
)
from stockalert.domain.events import (
    AlertRaised,
    Event,
    PriceUpdated,
    SubscriptionRemoved,
    SubscriptionSet,
)
from stockalert.domain.handlers import (
    accounts,
    alerting,
    cleanup,
    collection,
    delivery,
    login,
    queries,
)
from stockalert.domain.messagebus import HandlerSet, MessageBus
from stockalert.domain.model import LoginThrottle, Quotas, RetryPolicy
from stockalert.domain.ports import (
    NO_TELEMETRY,
    Clock,
    IdGenerator,
    Mailer,
    PasswordHasher,
    PriceSource,
    ReadModel,
    Telemetry,
    TokenIssuer,
    UnitOfWork,
)
from stockalert.domain.queries import (
    Authenticate,
    GetAverageValue,
    GetLatestValue,
    ListNotifications,
    ListSubscriptions,
)
from stockalert.domain.sharding import Shards


def authentication(*, read_model: ReadModel, tokens: TokenIssuer, clock: Clock) -> HandlerSet:
    """Who a bearer token belongs to (both APIs need it)."""
    return HandlerSet(
        queries={
            Authenticate: partial(queries.authenticate, read=read_model, tokens=tokens, clock=clock)
        }
    )


def account_commands(
    *,
    ids: IdGenerator,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    clock: Clock,
    quotas: Quotas | None = None,
    digest: Callable[[str], str] = login.unkeyed_digest,
    throttle: LoginThrottle | None = None,
) -> HandlerSet:
    """Register, log in, set and remove subscriptions, delete the account."""
    # Unknown e-mails are checked against this, so a failed login takes as long either way.
    decoy_hash = hasher.hash(secrets.token_urlsafe(16))
    limits = quotas or Quotas()
    return HandlerSet(
        commands={
            RegisterUser: partial(
                accounts.register_user, ids=ids, hasher=hasher, clock=clock, quotas=limits
            ),
            LoginUser: partial(
                login.login_user,
                hasher=hasher,
                tokens=tokens,
                clock=clock,
                decoy_hash=decoy_hash,
                throttle=throttle or LoginThrottle(),
                digest=digest,
            ),
            LogoutUser: login.logout_user,
            SetSubscription: partial(accounts.set_subscription, ids=ids, quotas=limits),
            RemoveSubscription: accounts.remove_subscription,
            DeleteUser: accounts.delete_user,
        }
    )


def read_queries(*, read_model: ReadModel) -> HandlerSet:
    """The query side: values, subscriptions, notification history."""
    return HandlerSet(
        queries={
            GetLatestValue: partial(queries.get_latest_value, read=read_model),
            GetAverageValue: partial(queries.get_average_value, read=read_model),
            ListSubscriptions: partial(queries.list_subscriptions, read=read_model),
            ListNotifications: partial(queries.list_notifications, read=read_model),
        }
    )


def price_collection(
    *, source: PriceSource, clock: Clock, ids: IdGenerator, telemetry: Telemetry = NO_TELEMETRY
) -> HandlerSet:
    """The collection cycle and the storing of new quotes (each given its correlation id)."""
    return HandlerSet(
        commands={
            CollectPrices: partial(
                collection.collect_prices, source=source, clock=clock, ids=ids, telemetry=telemetry
            ),
            RecordQuotes: partial(collection.record_quotes, clock=clock, ids=ids),
        }
    )


def alert_evaluation(
    *, alerts: AlertTracker, clock: Clock, telemetry: Telemetry = NO_TELEMETRY
) -> HandlerSet:
    """Quotes through the alert engine; the engine's index follows the subscriptions."""
    return HandlerSet(
        commands={
            ApplyQuotes: partial(
                alerting.apply_quotes, alerts=alerts, clock=clock, telemetry=telemetry
            ),
            LoadAlerts: partial(alerting.load_alerts, alerts=alerts, clock=clock),
            DropAlerts: partial(alerting.drop_alerts, alerts=alerts),
        },
        events={
            PriceUpdated: [
                partial(
                    alerting.apply_price_update, alerts=alerts, clock=clock, telemetry=telemetry
                )
            ],
            AlertRaised: [partial(alerting.report_alert, telemetry=telemetry)],
            SubscriptionSet: [partial(alerting.index_subscription, alerts=alerts)],
            SubscriptionRemoved: [partial(alerting.unindex_subscription, alerts=alerts)],
        },
    )


def notification_delivery(
    *,
    mailer: Mailer,
    clock: Clock,
    retry: RetryPolicy | None = None,
    recipients: Shards | None = None,
    lanes: Sequence[delivery.Lane] = (),
    telemetry: Telemetry = NO_TELEMETRY,
) -> HandlerSet:
    """E-mailing: fresh alerts at once, due PENDING ones in passes, each user's in order; to
    every user, or (a notifier instance) to the users of the shards it is assigned."""
    use = delivery.Delivery(
        mailer=mailer,
        clock=clock,
        retry=retry or RetryPolicy(),
        serial=threading.Lock(),  # one delivery at a time in this process
        recipients=recipients if recipients is not None else Shards.everything(),
        lanes=tuple(lanes),
        # The lanes' sending, beside the delivery's own (threads: it waits on the network).
        pool=ThreadPoolExecutor(len(lanes), thread_name_prefix="mail-lane") if lanes else None,
        telemetry=telemetry,
    )
    return HandlerSet(
        commands={
            DeliverNotifications: partial(delivery.deliver_notifications, delivery=use),
            RetryPendingNotifications: partial(delivery.retry_pending_notifications, delivery=use),
            AssignRecipients: partial(delivery.assign_recipients, delivery=use),
            RevokeRecipients: partial(delivery.revoke_recipients, delivery=use),
        },
        events={AlertRaised: [partial(delivery.deliver_notification, delivery=use)]},
    )


def retention(*, clock: Clock) -> HandlerSet:
    """The cleaner's work."""
    return HandlerSet(commands={CleanUp: partial(cleanup.clean_up, clock=clock)})


class Wakeable(Protocol):
    """Something to nudge (the outbox relay) when a commit wrote what it must publish."""

    def wake(self) -> None: ...


def outbox_wakeups(*, relay: Wakeable, published: Iterable[type[Event]]) -> HandlerSet:
    """After a commit wrote the outbox (the `published` events are those written there), the
    relay publishes at once instead of at its next interval."""

    def wake(event: Event, uow: UnitOfWork) -> None:
        relay.wake()

    return HandlerSet(events={kind: [wake] for kind in published})


def build_bus(
    *,
    uow_factory: Callable[[], UnitOfWork],
    clock: Clock,
    handler_sets: Iterable[HandlerSet],
    telemetry: Telemetry = NO_TELEMETRY,
    secret_digest: Callable[[str], str] | None = None,
) -> MessageBus:
    """A bus over these handler sets (each command or query type handled once); with
    `secret_digest`, a retried request must repeat its secrets too (a registration replayed
    with another password is refused, not answered as if it had been set)."""
    return MessageBus(
        uow_factory=uow_factory,
        clock=clock,
        handler_sets=handler_sets,
        telemetry=telemetry,
        secret_digest=secret_digest,
    )

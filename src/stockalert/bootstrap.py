"""Binds handlers to their dependencies and builds the message bus (no DI framework here)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import partial

from stockalert.domain import handlers, query_handlers
from stockalert.domain.alerting.tracker import AlertTracker
from stockalert.domain.commands import (
    CleanUp,
    CollectPrices,
    DeleteUser,
    LoadAlerts,
    LoginUser,
    RecordQuotes,
    RegisterUser,
    RemoveSubscription,
    RetryPendingNotifications,
    SetSubscription,
)
from stockalert.domain.events import (
    AlertRaised,
    Event,
    PriceUpdated,
    SubscriptionRemoved,
    SubscriptionSet,
)
from stockalert.domain.messagebus import EventHandler, MessageBus
from stockalert.domain.model import RetryPolicy
from stockalert.domain.ports import (
    Clock,
    IdGenerator,
    Mailer,
    PasswordHasher,
    PriceSource,
    ReadModel,
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


def build_bus(
    *,
    uow_factory: Callable[[], UnitOfWork],
    read_model: ReadModel,
    alerts: AlertTracker,
    mailer: Mailer,
    ids: IdGenerator,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    source: PriceSource,
    clock: Clock,
    alerting: bool = True,
    retry: RetryPolicy | None = None,
) -> MessageBus:
    """Every role's handlers on one in-process bus; `alerting=False` leaves price updates to
    other processes (the collector role), which evaluate and deliver alerts."""
    # Unknown e-mails are checked against this, so a failed login takes as long either way.
    decoy_hash = hasher.hash(secrets.token_urlsafe(16))
    retry = retry or RetryPolicy()
    alert_handlers: dict[type[Event], list[EventHandler]] = {
        SubscriptionSet: [partial(handlers.index_subscription, alerts=alerts)],
        SubscriptionRemoved: [partial(handlers.unindex_subscription, alerts=alerts)],
        PriceUpdated: [partial(handlers.apply_price_update, alerts=alerts)],
        AlertRaised: [
            partial(handlers.deliver_notification, mailer=mailer, clock=clock, retry=retry)
        ],
    }
    return MessageBus(
        uow_factory=uow_factory,
        clock=clock,
        commands={
            RegisterUser: partial(handlers.register_user, ids=ids, hasher=hasher, clock=clock),
            LoginUser: partial(
                handlers.login_user,
                hasher=hasher,
                tokens=tokens,
                clock=clock,
                decoy_hash=decoy_hash,
            ),
            SetSubscription: partial(handlers.set_subscription, ids=ids),
            RemoveSubscription: handlers.remove_subscription,
            DeleteUser: handlers.delete_user,
            RecordQuotes: partial(handlers.record_quotes, clock=clock),
            CollectPrices: partial(handlers.collect_prices, source=source, clock=clock),
            LoadAlerts: partial(handlers.load_alerts, alerts=alerts),
            CleanUp: partial(handlers.clean_up, clock=clock),
            RetryPendingNotifications: partial(
                handlers.retry_pending_notifications, mailer=mailer, clock=clock, retry=retry
            ),
        },
        events=alert_handlers if alerting else {},
        queries={
            Authenticate: partial(
                query_handlers.authenticate, read=read_model, tokens=tokens, clock=clock
            ),
            GetLatestValue: partial(query_handlers.get_latest_value, read=read_model),
            GetAverageValue: partial(query_handlers.get_average_value, read=read_model),
            ListSubscriptions: partial(query_handlers.list_subscriptions, read=read_model),
            ListNotifications: partial(query_handlers.list_notifications, read=read_model),
        },
    )

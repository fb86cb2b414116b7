"""Events: facts the domain records; the message bus hands them to their handlers."""

from __future__ import annotations

import attrs

from stockalert.domain.model import Notification, Quote, SideState, Subscription, Ticker


class Event:
    """Base of all events."""


@attrs.frozen
class SubscriptionSet(Event):
    """A subscription was created or changed; the states are those stored with it."""

    subscription: Subscription
    high: SideState
    low: SideState


@attrs.frozen
class SubscriptionRemoved(Event):
    """A subscription is gone (removed by its user, or with the user)."""

    subscription_id: str
    ticker: Ticker


@attrs.frozen
class UserDeleted(Event):
    """A user and all their data were removed."""

    user_id: str


@attrs.frozen
class PriceUpdated(Event):
    """A new quote, newer than any stored before for its ticker, was stored."""

    quote: Quote


@attrs.frozen
class AlertRaised(Event):
    """A side of a subscription crossed its threshold (or a reminder is due)."""

    notification: Notification

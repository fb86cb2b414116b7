"""Steps shared by the tests that drive the message bus over the in-memory adapters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from stockalert.adapters.memory.fakes import ManualClock
from stockalert.domain.commands import RecordQuotes, RegisterUser, SetSubscription, SubscriptionSpec
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import NotificationRecord, Quote, Ticker
from stockalert.domain.queries import ListNotifications, ListSubscriptions
from stockalert.domain.views import SubscriptionView, UserRegistered

GOOD_SECRET = "correct horse"  # a test account's password


def register(
    bus: MessageBus,
    email: str = "alice@example.com",
    *specs: SubscriptionSpec,
    request_id: str | None = None,
) -> str:
    """Register `email` (request id "reg-<email>" unless given) with `specs`; the user id."""
    reply = bus.handle(RegisterUser(request_id or f"reg-{email}", email, GOOD_SECRET, specs))
    assert isinstance(reply, UserRegistered)
    return reply.user_id


def set_sub(bus: MessageBus, user_id: str, request_id: str, **fields: Any) -> SubscriptionView:
    """SetSubscription with `fields` (ticker AAPL unless given); the reply."""
    fields.setdefault("ticker", "AAPL")
    reply = bus.handle(SetSubscription(request_id=request_id, user_id=user_id, **fields))
    assert isinstance(reply, SubscriptionView)
    return reply


def quote_at(clock: ManualClock, seconds: float, price: float, ticker: str = "AAPL") -> Quote:
    """A quote of `ticker` at `price`, `seconds` after the clock's now."""
    return Quote(Ticker(ticker), price, clock.now() + timedelta(seconds=seconds))


def record(
    bus: MessageBus, clock: ManualClock, seconds: float, price: float, ticker: str = "AAPL"
) -> object:
    """RecordQuotes of one quote (see `quote_at`); the reply (how many quotes were stored)."""
    return bus.handle(RecordQuotes((quote_at(clock, seconds, price, ticker),)))


def subscriptions(bus: MessageBus, user_id: str) -> list[SubscriptionView]:
    """The user's subscriptions as ListSubscriptions answers them."""
    views = bus.ask(ListSubscriptions(user_id))
    assert isinstance(views, list)
    return views


def only_subscription(bus: MessageBus, user_id: str) -> SubscriptionView:
    """The user's one subscription (fails if there are none or several)."""
    (view,) = subscriptions(bus, user_id)
    return view


def notifications(bus: MessageBus, user_id: str, limit: int = 0) -> list[NotificationRecord]:
    """The user's notifications as ListNotifications answers them (newest first)."""
    records = bus.ask(ListNotifications(user_id, limit))
    assert isinstance(records, list)
    return records

"""Quotes through the bus to e-mails (`domain/handlers/alerting.py`): one e-mail per crossing,
re-arming, cooldown, quotes out of order or with invalid prices."""

from __future__ import annotations

import math

import pytest

from stockalert.adapters.memory.fakes import ManualClock, MemoryMailer
from stockalert.adapters.memory.storage import MemoryStore
from stockalert.domain.commands import RecordQuotes, SubscriptionSpec
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import SideStatus, Ticker
from stockalert.domain.queries import GetLatestValue
from stockalert.domain.views import LatestValue
from tests.unit.helpers import only_subscription, quote_at, record, register, set_sub


def test_one_email_per_crossing_and_a_new_one_only_after_rearming(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
) -> None:
    """Above the high sends once; staying above sends nothing; back inside the band re-arms."""
    user_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))

    record(bus, clock, 1, 101)
    assert len(mailer.sent) == 1
    record(bus, clock, 2, 105)
    assert len(mailer.sent) == 1
    record(bus, clock, 3, 99.5)  # below the threshold but not inside the 1% band (99)
    record(bus, clock, 4, 101)
    assert len(mailer.sent) == 1
    record(bus, clock, 5, 98)
    assert only_subscription(bus, user_id).high_status is SideStatus.ARMED
    record(bus, clock, 6, 102)

    assert len(mailer.sent) == 2
    first, second = mailer.sent
    assert (first.user_id, first.ticker, first.price, first.threshold) == (
        user_id,
        Ticker("AAPL"),
        101,
        100,
    )
    assert second.price == 102
    assert first.notification_id != second.notification_id


def test_low_threshold_sends_an_email_when_the_price_falls_below(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
) -> None:
    """A quote strictly below low_value sends one e-mail; exactly at the threshold none."""
    register(bus, "alice@example.com", SubscriptionSpec("AAPL", low_value=100))

    record(bus, clock, 1, 100)
    assert mailer.sent == []
    record(bus, clock, 2, 99)

    assert [n.side.value for n in mailer.sent] == ["LOW"]


def test_a_cooldown_keeps_a_fired_side_fired_until_it_ends(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
) -> None:
    """Within cooldown_s of firing, a price back inside the band does not re-arm the side."""
    user_id = register(bus)
    set_sub(bus, user_id, "s1", high_value=100, cooldown_s=300)

    record(bus, clock, 0, 101)
    record(bus, clock, 10, 98)
    assert only_subscription(bus, user_id).high_status is SideStatus.FIRED
    record(bus, clock, 20, 101)
    assert len(mailer.sent) == 1
    record(bus, clock, 300, 98)
    assert only_subscription(bus, user_id).high_status is SideStatus.ARMED
    record(bus, clock, 301, 101)

    assert len(mailer.sent) == 2


@pytest.mark.parametrize("offset", [pytest.param(0, id="equal"), pytest.param(-1, id="older")])
def test_ignores_a_quote_not_newer_than_the_stored_one(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer, store: MemoryStore, offset: int
) -> None:
    """A quote with an older or equal quoted_at is not stored and triggers no alert."""
    user_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    assert record(bus, clock, 10, 90) == 1

    stored = record(bus, clock, 10 + offset, 150)

    assert stored == 0
    assert mailer.sent == []
    assert [q.price for q in store.quotes[Ticker("AAPL")]] == [90]
    latest = bus.ask(GetLatestValue(user_id))
    assert isinstance(latest, LatestValue)
    assert latest.value == 90


def test_skips_quotes_with_invalid_prices_and_counts_the_stored_ones(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer, store: MemoryStore
) -> None:
    """NaN, infinite, zero or negative prices are skipped without crashing; the rest count."""
    register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    quotes = (
        quote_at(clock, 1, math.nan),
        quote_at(clock, 2, -5),
        quote_at(clock, 3, 0),
        quote_at(clock, 4, math.inf),
        quote_at(clock, 5, 101),
        quote_at(clock, 6, math.nan),
    )

    stored = bus.handle(RecordQuotes(quotes))

    assert stored == 1
    assert [q.price for q in store.quotes[Ticker("AAPL")]] == [101]
    assert len(mailer.sent) == 1

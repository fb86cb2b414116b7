"""Quotes through the bus to e-mails (`domain/handlers/alerting.py`): one e-mail per crossing,
re-arming, cooldown, quotes out of order or with invalid prices."""

from __future__ import annotations

import logging
import math

import attrs
import pytest

from stockalert.adapters.logs import fields_of
from stockalert.adapters.memory.fakes import ManualClock, MemoryMailer
from stockalert.adapters.memory.storage import MemoryStore
from stockalert.domain.commands import RecordQuotes, SubscriptionSpec
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import NotificationKind, SideStatus, Ticker
from stockalert.domain.queries import GetLatestValue
from stockalert.domain.views import LatestValue
from tests.unit.helpers import (
    notifications,
    only_subscription,
    quote_at,
    record,
    register,
    set_sub,
)


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


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, object]]:
    """The fields of the captured `event=NAME` lines."""
    found = [fields_of(r.getMessage()) for r in caplog.records]
    return [f for f in found if f is not None and f.get("event") == event]


def test_one_correlation_id_follows_a_quote_into_its_log_lines_and_notifications(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer, caplog: pytest.LogCaptureFixture
) -> None:
    """The stored quote gets an id; the collector's, the alert's and the delivery's log lines
    and the notification carry it; a later quote (the reminder's) has its own id; a quote
    that arrives with an id keeps it."""
    caplog.set_level(logging.INFO, logger="stockalert")
    user_id = register(bus)
    set_sub(bus, user_id, "s1", high_value=100, remind_every_s=60)

    record(bus, clock, 1, 101)
    (stored,) = _lines(caplog, "quote_stored")
    correlation_id = stored["correlation_id"]
    assert isinstance(correlation_id, str)
    assert correlation_id
    (raised,) = _lines(caplog, "alert_raised")
    (sent,) = _lines(caplog, "notification_sent")
    assert raised["correlation_id"] == sent["correlation_id"] == correlation_id
    assert raised["notification_id"] == sent["notification_id"]
    assert [n.correlation_id for n in mailer.sent] == [correlation_id]
    (history,) = notifications(bus, user_id)
    assert history.notification.correlation_id == correlation_id

    caplog.clear()
    record(bus, clock, 120, 102)  # still above, a reminder is due: raised by this quote
    (stored,) = _lines(caplog, "quote_stored")
    assert stored["correlation_id"] != correlation_id
    reminder = mailer.sent[-1]
    assert reminder.kind is NotificationKind.REMINDER
    assert reminder.correlation_id == stored["correlation_id"]

    record(bus, clock, 200, 90)  # back inside the band: re-armed
    given = attrs.evolve(quote_at(clock, 300, 103), correlation_id="upstream-trace-1")
    bus.handle(RecordQuotes((given,)))
    assert _lines(caplog, "quote_stored")[-1]["correlation_id"] == "upstream-trace-1"
    crossing = mailer.sent[-1]
    assert crossing.kind is NotificationKind.CROSSING
    assert crossing.correlation_id == "upstream-trace-1"

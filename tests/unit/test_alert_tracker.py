"""The alert tracker of an instance that owns some tickers: it loads exactly those, drops
them when they go elsewhere, and catches up their stored quotes from the high-water mark."""

from __future__ import annotations

from typing import Any

import pytest

from stockalert.domain.alerting.tracker import AlertTracker
from stockalert.domain.commands import (
    DropAlerts,
    LoadAlerts,
    RecordQuotes,
    RegisterUser,
    SubscriptionSpec,
)
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.views import UserRegistered
from tests.wiring import Storage

AAPL, MSFT = Ticker("AAPL"), Ticker("MSFT")


def owning(storage: Storage, *tickers: Ticker) -> Any:
    """A process whose alert engine owns only `tickers` (as an alert-system instance)."""
    return storage.process(alerting__tracker=AlertTracker(owned=tickers))


def setup_users(storage: Storage) -> None:
    """Ann watches AAPL above 100 and MSFT above 200, through a process owning nothing."""
    bus = owning(storage).bus()
    specs = (SubscriptionSpec("AAPL", 100.0), SubscriptionSpec("MSFT", 200.0))
    reply = bus.handle(RegisterUser("r1", "ann@example.com", "password123", specs))
    assert isinstance(reply, UserRegistered)


def quotes(storage: Storage, aapl: float, msft: float) -> RecordQuotes:
    storage.clock.advance(60)
    at = storage.clock.now()
    return RecordQuotes((Quote(AAPL, aapl, at), Quote(MSFT, msft, at)))


def tickers_mailed(storage: Storage) -> list[str]:
    return [n.ticker.value for n in storage.mailer.sent]


def test_an_instance_evaluates_only_the_tickers_it_owns() -> None:
    """Quotes of a ticker the instance does not own change nothing there."""
    storage = Storage()
    setup_users(storage)
    aapl_owner = owning(storage, AAPL)

    aapl_owner.bus().handle(quotes(storage, 101.0, 201.0))

    assert tickers_mailed(storage) == ["AAPL"]


def test_assigning_a_ticker_loads_its_subscriptions_and_applies_its_backlog_once() -> None:
    """A ticker assigned later is loaded with its states and catches up the quotes stored
    after its mark: the MSFT crossing seen while nobody owned it is mailed, once."""
    storage = Storage()
    setup_users(storage)
    instance = owning(storage, AAPL)
    bus = instance.bus()
    bus.handle(quotes(storage, 101.0, 201.0))

    bus.handle(LoadAlerts(frozenset({MSFT})))
    bus.handle(LoadAlerts(frozenset({MSFT})))  # assigned twice: nothing new

    assert tickers_mailed(storage) == ["AAPL", "MSFT"]
    tracker = instance.alerting.tracker()
    assert tracker.owns(MSFT)


def test_a_revoked_ticker_is_dropped_and_taken_over_where_it_stopped() -> None:
    """After revocation the instance ignores the ticker; the instance it went to resumes
    from the stored states and mark: nothing lost, nothing twice."""
    storage = Storage()
    setup_users(storage)
    first = owning(storage, AAPL, MSFT).bus()
    first.handle(quotes(storage, 101.0, 150.0))  # AAPL fires
    first.handle(DropAlerts(frozenset({AAPL})))
    first.handle(quotes(storage, 90.0, 150.0))  # AAPL re-arms, unseen by `first`

    second = owning(storage).bus()
    second.handle(LoadAlerts(frozenset({AAPL})))  # catches up the 90.0: re-armed
    second.handle(quotes(storage, 102.0, 150.0))  # fires again: a second e-mail

    assert [(n.ticker.value, n.episode) for n in storage.mailer.sent] == [
        ("AAPL", 1),
        ("AAPL", 2),
    ]


def test_the_embedded_tracker_owns_every_ticker_and_cannot_give_one_up() -> None:
    """An engine over every ticker has nothing to revoke: asking is a programming error."""
    storage = Storage()
    setup_users(storage)
    tracker = storage.process().alerting.tracker()
    assert tracker.owns(AAPL)
    assert tracker.owns(Ticker("ANYTHING"))
    with pytest.raises(ValueError, match="owns every ticker"):
        tracker.revoke([AAPL])

"""The alert tracker of an instance that owns some shards of the tickers: it loads exactly
their tickers, drops them when they go elsewhere, catches up their stored quotes from the
high-water mark, and takes subscription changes from storage."""

from __future__ import annotations

from typing import Any

import pytest

from stockalert.domain.alerting.tracker import AlertTracker
from stockalert.domain.commands import (
    ApplyQuotes,
    DropAlerts,
    LoadAlerts,
    RecordQuotes,
    RegisterUser,
    SubscriptionSpec,
)
from stockalert.domain.events import SubscriptionSet
from stockalert.domain.model import ARMED, Quote, Ticker
from stockalert.domain.sharding import Shards, shard_of
from stockalert.domain.views import UserRegistered
from tests.wiring import Storage

AAPL, MSFT = Ticker("AAPL"), Ticker("MSFT")
COUNT = 2  # two shards: AAPL's and MSFT's
SHARD = {ticker: shard_of(ticker.value, COUNT) for ticker in (AAPL, MSFT)}
assert SHARD[AAPL] != SHARD[MSFT]


def owning(storage: Storage, *tickers: Ticker) -> Any:
    """A process whose alert engine owns only the shards of `tickers` (an alert-system
    instance that was assigned those partitions)."""
    process = storage.process(alerting__tracker=AlertTracker(Shards()))
    if tickers:
        process.bus().handle(assign(*tickers))
    return process


def assign(*tickers: Ticker) -> LoadAlerts:
    return LoadAlerts(frozenset(SHARD[t] for t in tickers), COUNT)


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

    bus.handle(assign(MSFT))
    bus.handle(assign(MSFT))  # assigned twice: nothing new

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
    first.handle(DropAlerts(frozenset({SHARD[AAPL]})))
    first.handle(quotes(storage, 90.0, 150.0))  # AAPL re-arms, unseen by `first`

    second = owning(storage).bus()
    second.handle(assign(AAPL))  # catches up the 90.0: re-armed
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
    with pytest.raises(ValueError, match="owns every key"):
        tracker.revoke([0])


def test_a_subscription_change_is_taken_from_storage_not_from_the_message() -> None:
    """A late or repeated change message (older states, an older threshold) changes nothing:
    the tracker reads the subscription and its states from storage, the truth."""
    storage = Storage()
    setup_users(storage)
    instance = owning(storage, AAPL, MSFT)
    bus = instance.bus()
    bus.handle(quotes(storage, 101.0, 150.0))  # AAPL fires (episode 1)
    tracker = instance.alerting.tracker()
    with instance.core.uow() as uow:
        aapl = uow.subscriptions.for_tickers([AAPL])[0]
    stale = SubscriptionSet(aapl, ARMED, ARMED)  # as announced before the crossing

    bus.publish(stale)
    bus.handle(quotes(storage, 102.0, 150.0))  # still FIRED: no second e-mail

    assert tickers_mailed(storage) == ["AAPL"]
    assert tracker.loaded


def test_partitions_of_a_new_split_start_over() -> None:
    """When the topic gets more partitions the shards mean other tickers: what is owned is
    loaded afresh from the new assignment alone."""
    storage = Storage()
    setup_users(storage)
    instance = owning(storage, AAPL, MSFT)
    tracker = instance.alerting.tracker()
    bus = instance.bus()

    bus.handle(LoadAlerts(frozenset({shard_of("AAPL", 3)}), 3))

    assert tracker.owns(AAPL)
    assert not tracker.owns(MSFT)
    bus.handle(quotes(storage, 101.0, 201.0))
    assert tickers_mailed(storage) == ["AAPL"]


def test_quotes_read_together_are_applied_in_order_once() -> None:
    """ApplyQuotes (what an alert-system read in one batch): the stored quotes of both
    tickers, AAPL crossing, re-arming and crossing again, give the e-mails one at a time
    would, in order; the same batch again (redelivered) gives none."""
    storage = Storage()
    setup_users(storage)
    instance = owning(storage, AAPL, MSFT)
    collector = owning(storage)  # stores the quotes; owns no ticker, so applies none
    batch: list[Quote] = []
    for aapl, msft in [(101.0, 150.0), (98.0, 201.0), (101.0, 202.0)]:
        recorded = quotes(storage, aapl, msft)
        collector.bus().handle(recorded)
        batch += recorded.quotes
    assert tickers_mailed(storage) == []

    instance.bus().handle(ApplyQuotes(tuple(batch)))

    assert tickers_mailed(storage) == ["AAPL", "MSFT", "AAPL"]
    instance.bus().handle(ApplyQuotes(tuple(batch)))
    assert len(tickers_mailed(storage)) == 3

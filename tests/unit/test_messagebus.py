"""The bus tells its caller when a handler failed, so that a consumer can decline to commit."""

from __future__ import annotations

import pytest

from stockalert.adapters.memory.fakes import ManualClock, SequentialIds, StaticPriceSource
from stockalert.adapters.memory.storage import MemoryStore, MemoryUnitOfWork
from stockalert.bootstrap import price_collection, retention
from stockalert.domain.commands import RecordQuotes
from stockalert.domain.events import PriceUpdated
from stockalert.domain.messagebus import EventHandler, HandlerFailed, HandlerSet, MessageBus
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.ports import UnitOfWork

QUOTE = Quote(Ticker("AAPL"), 100.0, ManualClock().now())


def bus_with(*handlers: EventHandler) -> MessageBus:
    store = MemoryStore()
    return MessageBus(
        lambda: MemoryUnitOfWork(store),
        ManualClock(),
        [HandlerSet(events={PriceUpdated: list(handlers)})],
    )


def failing(event: PriceUpdated, uow: UnitOfWork) -> None:
    raise RuntimeError("database gone")


def test_publish_raises_handler_failed_after_every_other_handler_ran() -> None:
    """One handler fails: the others still run, and the caller gets HandlerFailed."""
    seen: list[PriceUpdated] = []
    bus = bus_with(failing, lambda event, uow: seen.append(event))

    with pytest.raises(HandlerFailed) as excinfo:
        bus.publish(PriceUpdated(QUOTE))

    assert seen == [PriceUpdated(QUOTE)]
    ((event, error),) = excinfo.value.failures
    assert event == PriceUpdated(QUOTE)
    assert str(error) == "database gone"
    assert "PriceUpdated" in str(excinfo.value)


def test_publish_returns_quietly_when_every_handler_succeeded() -> None:
    """No failure, no exception: the consumer commits."""
    seen: list[PriceUpdated] = []
    bus_with(lambda event, uow: seen.append(event)).publish(PriceUpdated(QUOTE))
    assert seen == [PriceUpdated(QUOTE)]


def test_a_command_whose_events_failed_raises_with_its_committed_result() -> None:
    """The command committed (its result travels with the error); its event handler did
    not: the caller hears of both."""
    store = MemoryStore()
    clock = ManualClock()
    bus = MessageBus(
        lambda: MemoryUnitOfWork(store),
        clock,
        [
            price_collection(source=StaticPriceSource(), clock=clock, ids=SequentialIds()),
            HandlerSet(events={PriceUpdated: [failing]}),
        ],
    )

    with pytest.raises(HandlerFailed) as excinfo:
        bus.handle(RecordQuotes((QUOTE,)))

    assert excinfo.value.result == 1  # one quote stored
    assert store.quotes[Ticker("AAPL")] == [QUOTE]


def test_two_handler_sets_may_not_claim_the_same_command() -> None:
    """A command type has exactly one handler across a bus's sets."""
    clock = ManualClock()
    with pytest.raises(ValueError, match="CleanUp has two handlers"):
        MessageBus(lambda: MemoryUnitOfWork(MemoryStore()), clock, [retention(clock=clock)] * 2)

"""A collection cycle: new quotes stored and published once, tickers marked for users."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import timedelta
from typing import Any, cast

import pytest

from stockalert.adapters.memory.fakes import MemoryEventLog
from stockalert.domain.commands import CollectPrices, RegisterUser, SubscriptionSpec
from stockalert.domain.events import PriceUpdated
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import Quote, Ticker, TickerStatus
from stockalert.domain.ports import FetchFailed, PriceResult, UnknownTicker
from stockalert.domain.queries import ListSubscriptions
from stockalert.domain.views import CollectionReport, SubscriptionView, UserRegistered
from tests.wiring import build_container

AAPL, MSFT, NOPE = Ticker("AAPL"), Ticker("MSFT"), Ticker("NOPE")


class SettableSource:
    """A price source answering whatever the test set last; records what it was asked."""

    def __init__(self) -> None:
        self.answers: dict[Ticker, PriceResult] = {}
        self.asked: list[set[Ticker]] = []

    def fetch(self, tickers: Collection[Ticker]) -> Mapping[Ticker, PriceResult]:
        self.asked.append(set(tickers))
        return {t: self.answers.get(t, FetchFailed(t, "HTTP 503")) for t in tickers}


@pytest.fixture
def source() -> SettableSource:
    return SettableSource()


@pytest.fixture
def container(source: SettableSource) -> Iterator[Any]:
    container = build_container(collection__price_source=source)
    yield container
    container.reset_override()


@pytest.fixture
def bus(container: Any) -> MessageBus:
    return cast("MessageBus", container.bus())


@pytest.fixture
def published(bus: MessageBus) -> MemoryEventLog:
    """Every PriceUpdated the bus dispatches."""
    log = MemoryEventLog()
    bus.subscribe(PriceUpdated, lambda event, uow: log.publish(event))
    return log


@pytest.fixture
def user_id(bus: MessageBus) -> str:
    specs = (SubscriptionSpec("AAPL", 190.0), SubscriptionSpec("MSFT"), SubscriptionSpec("NOPE"))
    reply = bus.handle(RegisterUser("r1", "ann@example.com", "password123", specs))
    assert isinstance(reply, UserRegistered)
    return reply.user_id


def statuses(bus: MessageBus, user_id: str) -> dict[str, TickerStatus]:
    views = bus.ask(ListSubscriptions(user_id))
    assert isinstance(views, list)
    return {view.ticker: view.ticker_status for view in views if isinstance(view, SubscriptionView)}


def collect(bus: MessageBus, stale_after_s: float = 600.0) -> CollectionReport:
    report = bus.handle(CollectPrices(stale_after_s))
    assert isinstance(report, CollectionReport)
    return report


def test_a_cycle_fetches_the_tickers_in_use_in_one_batch(
    bus: MessageBus, source: SettableSource, user_id: str
) -> None:
    """One fetch per cycle with every ticker anybody watches, each once."""
    collect(bus)
    assert source.asked == [{AAPL, MSFT, NOPE}]


def test_nothing_is_fetched_while_nobody_watches_anything(
    bus: MessageBus, source: SettableSource
) -> None:
    """No subscriptions, no request to the price source."""
    assert collect(bus) == CollectionReport(0, 0)
    assert source.asked == []


def test_new_quotes_are_stored_and_published_once(
    bus: MessageBus,
    source: SettableSource,
    container: Any,
    published: MemoryEventLog,
    user_id: str,
) -> None:
    """A quote is published when new; the same quote next cycle is skipped."""
    now = container.core.clock().now()
    source.answers = {AAPL: Quote(AAPL, 189.0, now), MSFT: Quote(MSFT, 400.0, now)}
    first = collect(bus)
    second = collect(bus)
    source.answers[AAPL] = Quote(AAPL, 191.0, now + timedelta(minutes=1))
    third = collect(bus)
    assert (first.stored, second.stored, third.stored) == (2, 0, 1)
    prices = sorted(e.quote.price for e in published.events if isinstance(e, PriceUpdated))
    assert prices == [189.0, 191.0, 400.0]
    assert len(container.delivery.mailer().sent) == 1  # 191 crossed AAPL's 190 once


def test_an_older_quote_than_the_stored_one_is_skipped(
    bus: MessageBus, source: SettableSource, container: Any, user_id: str
) -> None:
    """A source answering with an older quote (a lagging replica) stores nothing."""
    now = container.core.clock().now()
    source.answers = {AAPL: Quote(AAPL, 189.0, now)}
    collect(bus)
    source.answers = {AAPL: Quote(AAPL, 250.0, now - timedelta(minutes=5))}
    assert collect(bus).stored == 0
    assert container.delivery.mailer().sent == []


def test_tickers_are_marked_active_unknown_or_pending(
    bus: MessageBus, source: SettableSource, container: Any, user_id: str
) -> None:
    """Users see which of their tickers has prices, which the source does not know."""
    assert statuses(bus, user_id) == {
        "AAPL": TickerStatus.PENDING,
        "MSFT": TickerStatus.PENDING,
        "NOPE": TickerStatus.PENDING,
    }
    now = container.core.clock().now()
    source.answers = {AAPL: Quote(AAPL, 189.0, now), NOPE: UnknownTicker(NOPE)}
    report = collect(bus)
    assert (report.unknown, report.failed) == (("NOPE",), ("MSFT",))
    assert statuses(bus, user_id) == {
        "AAPL": TickerStatus.ACTIVE,
        "MSFT": TickerStatus.PENDING,  # failed, but nothing known yet: still pending
        "NOPE": TickerStatus.UNKNOWN,
    }


def test_a_ticker_without_new_quotes_for_too_long_turns_stale_then_active_again(
    bus: MessageBus, source: SettableSource, container: Any, user_id: str
) -> None:
    """STALE after stale_after_s without a new quote; ACTIVE again with the next new one."""
    clock = container.core.clock()
    start = clock.now()
    source.answers = {AAPL: Quote(AAPL, 189.0, start)}
    collect(bus, stale_after_s=600)
    clock.advance(600)
    collect(bus, stale_after_s=600)
    assert statuses(bus, user_id)["AAPL"] is TickerStatus.ACTIVE  # exactly at the limit
    clock.advance(1)
    collect(bus, stale_after_s=600)
    assert statuses(bus, user_id)["AAPL"] is TickerStatus.STALE
    source.answers = {AAPL: Quote(AAPL, 189.5, clock.now())}
    collect(bus, stale_after_s=600)
    assert statuses(bus, user_id)["AAPL"] is TickerStatus.ACTIVE


def test_a_bad_ticker_never_stops_a_cycle(
    bus: MessageBus, source: SettableSource, container: Any, user_id: str
) -> None:
    """Unknown and failing tickers beside a good one: the good one is stored."""
    now = container.core.clock().now()
    source.answers = {AAPL: Quote(AAPL, 189.0, now), NOPE: UnknownTicker(NOPE)}
    assert collect(bus).stored == 1

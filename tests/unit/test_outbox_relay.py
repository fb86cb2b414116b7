"""The transactional outbox and its relay, in memory: rows are written with the change that
raised them (never for a rolled-back one), and the relay publishes each exactly once, also
when it dies between sending and removing, one relay at a time."""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence
from datetime import timedelta

import pytest

from stockalert.adapters.kafka.codec import decode
from stockalert.adapters.kafka.producer import Delivered
from stockalert.adapters.kafka.relay import OutboxRelay
from stockalert.adapters.kafka.topics import Topics
from stockalert.adapters.memory.fakes import ManualClock
from stockalert.adapters.memory.storage import MemoryOutboxStore, MemoryStore
from stockalert.adapters.outbox import Checkpoints, OutboxRow
from stockalert.containers import in_memory_config
from stockalert.domain.commands import RecordQuotes, RegisterUser, SetSubscription
from stockalert.domain.errors import InvalidArgument
from stockalert.domain.events import AlertRaised, PriceUpdated, SubscriptionSet
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.views import UserRegistered
from tests.wiring import build_container

TOPICS = Topics()
PARTITIONS = 3


class Crash(SystemExit):
    """The relay process dies here."""


class MemoryLog:
    """Kafka as the relay sees it: partitions of (key, outbox id) in offset order."""

    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], list[tuple[bytes, int]]] = {}
        self.fail_next = False

    def publish(self, rows: Sequence[OutboxRow]) -> list[Delivered]:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("brokers unreachable")
        delivered = []
        for row in rows:
            partition = zlib.crc32(row.message.key) % PARTITIONS
            log = self.partitions.setdefault((row.message.topic, partition), [])
            log.append((row.message.key, row.outbox_id))
            delivered.append(Delivered(row.message.topic, partition, len(log) - 1))
        return delivered

    def end_offsets(self, topics: Collection[str]) -> dict[tuple[str, int], int]:
        return {
            (t, p): len(self.partitions.get((t, p), [])) for t in topics for p in range(PARTITIONS)
        }

    def ids_after(self, since: Checkpoints) -> tuple[set[int], dict[tuple[str, int], int]]:
        ids = {
            outbox_id
            for tp, offset in since.items()
            for _, outbox_id in self.partitions.get(tp, [])[offset:]
        }
        return ids, {tp: len(self.partitions.get(tp, [])) for tp in since}

    def published(self) -> list[int]:
        return sorted(i for log in self.partitions.values() for _, i in log)


class CrashAfterSending(MemoryOutboxStore):
    """The relay dies after the brokers acknowledged a batch, before the rows are removed."""

    def publish_done(self, outbox_ids: Collection[int], checkpoints: Checkpoints) -> None:
        if outbox_ids:
            raise Crash
        super().publish_done(outbox_ids, checkpoints)


def relay(
    store: MemoryOutboxStore, log: MemoryLog, owner: str = "a", clock: ManualClock | None = None
) -> OutboxRelay:
    clock = clock or ManualClock()
    return OutboxRelay(store, log, [TOPICS.to_alert_system], owner, clock.now, batch=2)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def write_quotes(store: MemoryStore, *prices: float) -> None:
    """RecordQuotes (a minute after the newest stored) through a bus whose unit of work
    writes the outbox."""
    container = build_container(config=in_memory_config(transport="kafka"), core__store=store)
    stored = store.quotes.get(Ticker("AAPL"))
    at = stored[-1].quoted_at if stored else ManualClock().now()
    for price in prices:
        at += timedelta(minutes=1)
        container.bus().handle(RecordQuotes((Quote(Ticker("AAPL"), price, at),)))


def test_the_outbox_gets_a_row_per_published_event_in_the_transaction_of_the_change(
    store: MemoryStore,
) -> None:
    """A subscription change writes its SubscriptionSet; a refused command (its savepoint
    rolled back) writes nothing; a quote writes PriceUpdated (key = ticker), and the crossing
    it causes its Notification (key = user), in the alert's own transaction."""
    container = build_container(config=in_memory_config(transport="kafka"), core__store=store)
    bus = container.bus()
    reply = bus.handle(RegisterUser("r1", "ann@example.com", "password123"))
    assert isinstance(reply, UserRegistered)
    bus.handle(SetSubscription("r2", reply.user_id, "AAPL", high_value=10.0))
    with pytest.raises(InvalidArgument):
        bus.handle(SetSubscription("r3", reply.user_id, "AAPL", low_value=20.0))  # high <= low
    clock = container.core.clock()
    bus.handle(RecordQuotes((Quote(Ticker("AAPL"), 11.0, clock.now()),)))

    rows = [store.outbox[i] for i in sorted(store.outbox)]
    events = [decode(row.message.value) for row in rows]
    assert [type(e) for e in events] == [SubscriptionSet, PriceUpdated, AlertRaised]
    assert [row.message.key for row in rows] == [b"id2", b"AAPL", reply.user_id.encode()]


def test_without_kafka_nothing_is_written_to_the_outbox(store: MemoryStore) -> None:
    """The embedded run keeps its events in process: no outbox rows pile up."""
    container = build_container(core__store=store)
    container.bus().handle(RecordQuotes((Quote(Ticker("AAPL"), 11.0, ManualClock().now()),)))
    assert store.outbox == {}


def test_the_relay_publishes_every_row_once_in_id_order_and_removes_it(store: MemoryStore) -> None:
    """Two passes publish five rows once each (batches of two), then nothing."""
    write_quotes(store, 1.0, 2.0, 3.0, 4.0, 5.0)
    log = MemoryLog()
    outbox = MemoryOutboxStore(store)

    assert relay(outbox, log).publish_pending() == 5
    assert relay(outbox, log).publish_pending() == 0

    assert log.published() == [1, 2, 3, 4, 5]
    assert store.outbox == {}
    (ids,) = [[i for _, i in entries] for entries in log.partitions.values()]
    assert ids == [1, 2, 3, 4, 5]  # one key, one partition, in order


def test_a_relay_that_died_between_sending_and_removing_is_not_published_twice(
    store: MemoryStore,
) -> None:
    """The next relay finds the sent rows after its checkpoint and only removes them; the
    rows never sent go out once; a row committed late (a lower id) is not lost."""
    write_quotes(store, 1.0, 2.0, 3.0)
    log = MemoryLog()
    with pytest.raises(Crash):
        relay(CrashAfterSending(store), log).publish_pending()  # rows 1, 2 sent, not removed
    assert log.published() == [1, 2]
    write_quotes(store, 4.0)

    assert relay(MemoryOutboxStore(store), log, owner="b", clock=_expired()).publish_pending() == 2

    assert log.published() == [1, 2, 3, 4]
    assert store.outbox == {}


def _expired() -> ManualClock:
    clock = ManualClock()
    clock.advance(3600)  # the dead relay's lease has expired
    return clock


def test_a_failed_send_leaves_the_rows_and_the_next_pass_sends_them_once(
    store: MemoryStore,
) -> None:
    """Brokers unreachable: nothing is removed; the next pass checks what went out, then
    sends the rest."""
    write_quotes(store, 1.0, 2.0)
    log = MemoryLog()
    log.fail_next = True
    one = relay(MemoryOutboxStore(store), log)
    with pytest.raises(RuntimeError, match="brokers unreachable"):
        one.publish_pending()
    assert len(store.outbox) == 2

    assert one.publish_pending() == 2
    assert log.published() == [1, 2]


def test_one_relay_at_a_time_publishes(store: MemoryStore) -> None:
    """While relay a holds the lease, relay b publishes nothing; once it has expired, b takes
    over where a left off."""
    clock = ManualClock()
    write_quotes(store, 1.0)
    log = MemoryLog()
    outbox = MemoryOutboxStore(store)
    assert relay(outbox, log, "a", clock).publish_pending() == 1
    write_quotes(store, 2.0)

    assert relay(outbox, log, "b", clock).publish_pending() == 0
    clock.advance(timedelta(seconds=31).total_seconds())
    assert relay(outbox, log, "b", clock).publish_pending() == 1
    assert log.published() == [1, 2]

"""The outbox relay: publishes the outbox rows in id order, each exactly once (ADR 10).

Normal pass: take (or renew) the lease; send a batch of pending rows, each message carrying
its outbox id in the header `stockalert-outbox-id`; wait for every acknowledgement; then, in
one database transaction, remove the rows and move the checkpoints (per topic partition, the
offset after the last message published there).

Recovery, before the first pass of a relay that has just taken the lease (a start, or after
any failure): a relay that died between sending and removing left rows that are already in
Kafka. They are exactly the pending rows whose ids appear in the partitions after the
checkpoints: those are removed without sending them again; the others (never sent, or
committed late by a slow transaction) go out in the next pass. Partitions without a
checkpoint get one at their current end before anything is sent to them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from stockalert.adapters.kafka import CLIENT_LOG
from stockalert.adapters.kafka.producer import Delivered, Headers, KafkaProducer
from stockalert.adapters.outbox import Checkpoints, OutboxRow, OutboxStore
from stockalert.faults import crash_point

log = logging.getLogger(__name__)

OUTBOX_ID_HEADER = "stockalert-outbox-id"
# What a partition answers for a moment while its leader moves or it is being created.
_MOVING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
    }
)
LEASE = "outbox-relay"


class OutboxLog(Protocol):
    """The relay's view of Kafka."""

    def publish(self, rows: Sequence[OutboxRow]) -> list[Delivered]:
        """Send the rows (outbox id in a header) and wait for every acknowledgement."""
        ...

    def end_offsets(self, topics: Collection[str]) -> dict[tuple[str, int], int]:
        """The current end offset of every partition of `topics`."""
        ...

    def ids_after(self, since: Checkpoints) -> tuple[set[int], dict[tuple[str, int], int]]:
        """The outbox ids in each partition from its `since` offset to its end, and those
        ends."""
        ...


class OutboxRelay:
    """Publishes the outbox to Kafka, exactly once, one relay at a time (the lease)."""

    def __init__(
        self,
        store: OutboxStore,
        kafka: OutboxLog,
        topics: Collection[str],
        owner: str,
        now: Callable[[], datetime],
        *,
        batch: int = 500,
        lease_ttl: timedelta = timedelta(seconds=10),
        interval_s: float = 1.0,
    ) -> None:
        self._store = store
        self._kafka = kafka
        self._topics = sorted(topics)
        self._owner = owner
        self._now = now
        self._batch = batch
        self._lease_ttl = lease_ttl
        self._interval_s = interval_s
        self._recovered = False
        self._wake = threading.Event()

    def wake(self) -> None:
        """New rows were committed: publish now rather than at the next interval."""
        self._wake.set()

    def run(self, halt: threading.Event) -> None:
        """Publish until `halt` is set; a failure is logged and the next pass recovers."""
        delay = self._interval_s
        while not halt.is_set():
            try:
                self.publish_pending()
                delay = self._interval_s
            except Exception:
                self._recovered = False
                log.exception("event=outbox_relay_failed retry_in_s=%g", delay)
                delay = min(delay * 2, 30.0)
            self._wake.wait(delay)
            self._wake.clear()

    def publish_pending(self) -> int:
        """One pass: every pending row, batch by batch, while this relay holds the lease."""
        sent = 0
        while self._store.take_lease(LEASE, self._owner, self._now(), self._lease_ttl):
            if not self._recovered:
                self._recover()
                self._recovered = True
            rows = self._store.pending(self._batch)
            if not rows:
                return sent
            try:
                delivered = self._kafka.publish(rows)
            except Exception:
                self._recovered = False  # some may be in Kafka: look before sending again
                raise
            crash_point("relay.published")
            self._store.publish_done([r.outbox_id for r in rows], _checkpoints(delivered))
            sent += len(rows)
            log.debug("event=outbox_published count=%d", len(rows))
        self._recovered = False  # another relay holds the lease: recover when it is ours
        return sent

    def _recover(self) -> None:
        checkpoints = self._store.checkpoints()
        ends = self._kafka.end_offsets(self._topics)
        fresh = {tp: end for tp, end in ends.items() if tp not in checkpoints}
        if fresh:
            self._store.publish_done([], fresh)
            checkpoints.update(fresh)
        pending = self._store.pending(1_000_000)
        if not pending:
            return
        present, new_ends = self._kafka.ids_after(checkpoints)
        done = [row.outbox_id for row in pending if row.outbox_id in present]
        self._store.publish_done(done, new_ends)
        log.info("event=outbox_recovered pending=%d already_published=%d", len(pending), len(done))


def _checkpoints(delivered: Sequence[Delivered]) -> dict[tuple[str, int], int]:
    ends: dict[tuple[str, int], int] = {}
    for d in delivered:
        key = (d.topic, d.partition)
        ends[key] = max(ends.get(key, 0), d.offset + 1)
    return ends


class KafkaOutboxLog:
    """OutboxLog over a producer (sending) and a group-less consumer (reading back)."""

    def __init__(
        self,
        producer: KafkaProducer | Callable[[], KafkaProducer],
        bootstrap: str,
        timeout_s: float = 10.0,
    ) -> None:
        # A factory: the producer (and its connections) is made at the first publish.
        self._producer = producer if callable(producer) else (lambda: producer)
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s

    def publish(self, rows: Sequence[OutboxRow]) -> list[Delivered]:
        headers: list[Headers] = [[(OUTBOX_ID_HEADER, str(row.outbox_id).encode())] for row in rows]
        return self._producer().send([row.message for row in rows], headers)

    def _reader(self) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "logger": CLIENT_LOG,
                # Never joins the group nor commits: it only reads partitions it assigns.
                "group.id": "stockalert-outbox-relay-reader",
                "enable.auto.commit": False,
            }
        )

    def _ends(
        self, reader: Consumer, partitions: Collection[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        ends = {}
        deadline = time.monotonic() + self._timeout_s
        for topic, partition in partitions:
            while True:
                try:
                    _, high = reader.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=self._timeout_s
                    )
                    break
                except KafkaException as err:
                    # A leader moving (a broker restarting, a topic just created): ask again.
                    code = err.args[0].code()
                    if code not in _MOVING or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            ends[(topic, partition)] = high
        return ends

    def end_offsets(self, topics: Collection[str]) -> dict[tuple[str, int], int]:
        reader = self._reader()
        try:
            metadata = reader.list_topics(timeout=self._timeout_s)
            partitions = []
            for topic in topics:
                found = metadata.topics.get(topic)
                if found is None or found.error is not None:
                    raise RuntimeError(f"topic {topic} is not in the cluster: run kafka-admin")
                partitions += [(topic, partition) for partition in found.partitions]
            return self._ends(reader, partitions)
        finally:
            reader.close()

    def ids_after(self, since: Checkpoints) -> tuple[set[int], dict[tuple[str, int], int]]:
        reader = self._reader()
        try:
            ends = self._ends(reader, list(since))
            todo = [
                TopicPartition(t, p, since[(t, p)])
                for (t, p), end in ends.items()
                if since[(t, p)] < end
            ]
            ids: set[int] = set()
            if todo:
                reader.assign(todo)
                deadline = time.monotonic() + 6 * self._timeout_s
                while todo:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"could not read {len(todo)} partitions back in time")
                    for message in reader.consume(num_messages=500, timeout=0.5):
                        if message.error() is None:
                            ids.update(outbox_ids_of(message))
                    # Done with a partition once its position reaches the end we read: gaps
                    # (compaction) and control records never stall the loop.
                    todo = [
                        tp
                        for tp in reader.position(todo)
                        if tp.offset < ends[(tp.topic, tp.partition)]
                    ]
            return ids, ends
        finally:
            reader.close()


def outbox_ids_of(message: Message) -> Iterator[int]:
    """The outbox ids a message carries in its headers (one, for a relayed message)."""
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        if name == OUTBOX_ID_HEADER and value is not None:
            yield int(value)

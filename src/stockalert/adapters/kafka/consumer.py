"""The consumer: offsets committed only after the work is durable; nothing crashes it.

Per message:
- not an event we can read (CodecError) → sent to the dead-letter topic with the reason, the
  source topic, partition and offset in headers (the original key and value kept), then its
  offset is committed: the consumer moves on, no crash loop, no silent skip;
- the handler raised (the database is down, a handler failed) → not committed: the consumer
  seeks back to the message and tries it again after a growing pause (1 s … 30 s), still
  polling, so the group keeps it;
- handled → its offset is committed (synchronously) before the next message.

Messages are taken in batches: what has arrived (up to `batch_size`, without waiting for
more) is decoded, the readable events handed over together (`handle_batch`, or `handle` one
by one), the unreadable ones dead-lettered, and then the offset after the batch committed
once per partition. A failure anywhere seeks every partition of the batch back to its first
message: the whole batch comes again, which idempotent handlers absorb.

Settings and why: `enable.auto.commit` off (commits follow the work); `auto.offset.reset`
earliest (a new group reads what was published before it started); `session.timeout.ms` 10 s
(the partitions of a killed instance move to the others within seconds, not the default
45 s); `max.poll.interval.ms` 60 s (the loop calls poll at least every few seconds, even
while retrying, so only a hung handler makes the instance leave the group);
`isolation.level` read_committed (never read what a transactional producer aborted);
`partition.assignment.strategy` cooperative-sticky (a rebalance moves only the partitions
that change owner: the others' state stays loaded).

A member learns its partitions through `on_assign(partitions, count)` (the partitions of its
one topic it got, and how many the topic has) and `on_revoke(partitions)`, called in the
polling thread before the partitions go to another member.

`follow=True` makes a follower instead: no group, every partition of the topics from their
end at start, no commits (an alert-system instance hears every subscription change).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from stockalert.adapters.kafka import CLIENT_LOG
from stockalert.adapters.kafka.codec import CodecError, decode
from stockalert.adapters.kafka.producer import Headers, KafkaProducer
from stockalert.adapters.outbox import OutboxMessage
from stockalert.adapters.telemetry import Metrics
from stockalert.domain.events import Event
from stockalert.faults import crash_point

log = logging.getLogger(__name__)

DLQ_REASON = "stockalert-dlq-reason"
DLQ_TOPIC = "stockalert-dlq-topic"
DLQ_PARTITION = "stockalert-dlq-partition"
DLQ_OFFSET = "stockalert-dlq-offset"
MAX_RETRY_PAUSE_S = 30.0
BATCH_SIZE = 500  # messages handled together at most


class TopicsMissing(RuntimeError):
    """A topic to read does not exist (yet): kafka-admin creates them."""


Assigned = Callable[[frozenset[int], int], object]
Revoked = Callable[[frozenset[int]], object]


@attrs.frozen
class ConsumerSettings:
    """A consumer group member."""

    bootstrap: str
    group_id: str
    client_id: str = "stockalert"
    session_timeout_ms: int = 10_000
    max_poll_interval_ms: int = 60_000


def consumer_config(settings: ConsumerSettings) -> dict[str, Any]:
    """librdkafka's configuration of a consumer with these settings (see the module doc)."""
    return {
        "bootstrap.servers": settings.bootstrap,
        "group.id": settings.group_id,
        "client.id": settings.client_id,
        "logger": CLIENT_LOG,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(1_000, settings.session_timeout_ms // 3),
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
    }


def _number(partition: TopicPartition) -> int:
    return int(partition.partition)


class KafkaEventConsumer:
    """Reads events from topics in a consumer group and hands each to `handle`."""

    def __init__(
        self,
        settings: ConsumerSettings,
        topics: Sequence[str],
        handle: Callable[[Event], None],
        dead_letters: KafkaProducer,
        dead_letter_topic: str,
        *,
        on_assign: Assigned | None = None,
        on_revoke: Revoked | None = None,
        follow: bool = False,
        sleep: Callable[[float], object] | None = None,
        handle_batch: Callable[[Sequence[Event]], None] | None = None,
        batch_size: int = BATCH_SIZE,
        metrics: Metrics | None = None,
    ) -> None:
        if (on_assign or on_revoke) and len(topics) != 1:
            raise ValueError("partition callbacks need exactly one topic")
        self._consumer = Consumer(consumer_config(settings))
        self._follow = follow
        self._topics = list(topics)
        self._handle = handle
        self._handle_batch = handle_batch
        self._batch_size = batch_size
        self._dead_letters = dead_letters
        self._dead_letter_topic = dead_letter_topic
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._pause = threading.Event()
        self._sleep = sleep or self._pause.wait
        self._retry_s = 1.0
        self._subscribed = False
        self._metrics = metrics

    def start(self) -> None:
        """Join the group (or, a follower, take position at the end of every partition) now
        rather than at the first poll. Raises TopicsMissing while a topic does not exist."""
        self._subscribe()

    def start_when_ready(self, halt: threading.Event) -> bool:
        """`start`, tried again after a growing pause while the topics are missing or the
        cluster cannot be reached; False when halted first."""
        delay = 1.0
        while not halt.is_set():
            try:
                self.start()
            except (TopicsMissing, KafkaException) as err:
                log.warning("event=kafka_not_ready retry_in_s=%g error=%r", delay, str(err))
                halt.wait(delay)
                delay = min(delay * 2, MAX_RETRY_PAUSE_S)
                continue
            return True
        return False

    def _subscribe(self) -> None:
        if self._subscribed:
            return
        self._require_topics()
        if self._follow:
            self._consumer.assign(self._ends())
            self._subscribed = True
            return

        def assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if not partitions:
                return  # an incremental rebalance that gave this member nothing new
            log.info(
                "event=kafka_partitions_assigned topics=%s partitions=%s",
                ",".join(self._topics),
                ",".join(str(p.partition) for p in sorted(partitions, key=_number)),
            )
            if self._on_assign is not None:
                topic = self._topics[0]
                count = len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
                self._callback(self._on_assign, frozenset(p.partition for p in partitions), count)

        def revoked(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if not partitions:
                return
            log.info(
                "event=kafka_partitions_revoked topics=%s partitions=%s",
                ",".join(self._topics),
                ",".join(str(p.partition) for p in sorted(partitions, key=_number)),
            )
            if self._on_revoke is not None:
                self._callback(self._on_revoke, frozenset(p.partition for p in partitions))

        self._consumer.subscribe(
            self._topics, on_assign=assigned, on_revoke=revoked, on_lost=revoked
        )
        self._subscribed = True

    @staticmethod
    def _callback(callback: Callable[..., object], *args: object) -> None:
        """A partition callback runs inside poll: it must not raise there (what it could not
        do, such as loading state while the database is down, is done at first use)."""
        try:
            callback(*args)
        except Exception:
            log.exception("event=kafka_rebalance_callback_failed callback=%s", callback)

    def _require_topics(self) -> None:
        """Subscribing to a topic that does not exist would read nothing until the client's
        next metadata refresh (minutes) after it is created: wait for it instead."""
        missing = []
        for topic in self._topics:
            metadata = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
            if metadata is None or metadata.error is not None:
                missing.append(topic)
        if missing:
            raise TopicsMissing(f"no topic {', '.join(missing)}: run kafka-admin")

    def _ends(self) -> list[TopicPartition]:
        """Every partition of the topics at its current end (a follower starts there)."""
        wanted = []
        for topic in self._topics:
            metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
            if metadata.error is not None:
                raise RuntimeError(f"topic {topic}: {metadata.error}: run kafka-admin")
            for partition in metadata.partitions:
                tp = TopicPartition(topic, partition)
                _, high = self._consumer.get_watermark_offsets(tp, timeout=10)
                wanted.append(TopicPartition(topic, partition, high))
        return wanted

    def run(self, halt: threading.Event) -> None:
        """Consume until `halt` is set, then leave the group."""
        try:
            while not halt.is_set():
                try:
                    self.poll_once(1.0)
                except TopicsMissing as err:
                    log.warning(
                        "event=kafka_not_ready retry_in_s=%g error=%r", self._retry_s, str(err)
                    )
                    self._sleep(self._retry_s)
                    self._retry_s = min(self._retry_s * 2, MAX_RETRY_PAUSE_S)
                except Exception:
                    log.exception("event=kafka_consumer_failed retry_in_s=%g", self._retry_s)
                    self._sleep(self._retry_s)
                    self._retry_s = min(self._retry_s * 2, MAX_RETRY_PAUSE_S)
        finally:
            self.close()

    def close(self) -> None:
        """Leave the group (its partitions go to the other members at once)."""
        self._pause.set()
        self._consumer.close()

    def poll_once(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for a message, then deal with it and with whatever else has
        arrived (one batch); True when one came."""
        self._subscribe()
        first = self._consumer.poll(timeout_s)
        if first is None:
            return False
        messages = [first]
        if self._batch_size > 1:
            messages += self._consumer.consume(num_messages=self._batch_size - 1, timeout=0)
        readable: list[Message] = []
        for message in messages:
            error = message.error()
            if error is None:
                readable.append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("event=kafka_consumer_error error=%r", error.str())
        if readable:
            self._deal_with(readable)
            if self._metrics is not None:
                self._report_lag(readable, self._metrics)
        return True

    def _report_lag(self, messages: Sequence[Message], metrics: Metrics) -> None:
        """Per partition of the batch: what is left to read after it (the high watermark the
        broker sent with the fetch, minus the next offset)."""
        last: dict[tuple[str, int], int] = {}
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is not None and partition is not None and offset is not None:
                last[(topic, partition)] = max(last.get((topic, partition), offset), offset)
        for (topic, partition), offset in last.items():
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high >= 0:
                lag = max(high - (offset + 1), 0)
                metrics.consumer_lag.labels(metrics.role, topic, str(partition)).set(lag)

    def _deal_with(self, messages: list[Message]) -> None:
        events: list[Event] = []
        poison: list[tuple[Message, CodecError]] = []
        for message in messages:
            try:
                events.append(decode(message.value()))
            except CodecError as err:
                poison.append((message, err))
        try:
            if events:
                if self._handle_batch is not None:
                    self._handle_batch(events)
                else:
                    for event in events:
                        self._handle(event)
        except Exception:
            first = messages[0]
            log.exception(
                "event=kafka_handle_failed topic=%s partition=%s offset=%s messages=%d "
                "retry_in_s=%g",
                first.topic(),
                first.partition(),
                first.offset(),
                len(messages),
                self._retry_s,
            )
            self._again(messages)
            return
        for message, reason in poison:
            if not self._dead_letter(message, reason):
                self._again(messages)  # not committed: it must reach the dead-letter topic
                return
        self._retry_s = 1.0
        crash_point("consumer.handled")
        self._commit(messages)

    def _commit(self, messages: Sequence[Message]) -> None:
        if self._follow:
            return
        offsets = _after(messages)
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as err:
            # A rebalance under way, or the partition already moved: its new owner reads the
            # messages again and finds them done (every consumer here is idempotent).
            log.warning(
                "event=kafka_commit_failed offsets=%s error=%r",
                ",".join(f"{o.topic}/{o.partition}@{o.offset}" for o in offsets),
                str(err),
            )

    def _again(self, messages: Sequence[Message]) -> None:
        """Not committed: the same messages come again after a pause."""
        firsts: dict[tuple[str, int], int] = {}
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is not None and partition is not None and offset is not None:
                key = (topic, partition)
                firsts[key] = min(firsts.get(key, offset), offset)
        for (topic, partition), offset in firsts.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as err:  # the partition moved meanwhile: its owner reads it
                log.warning("event=kafka_seek_failed error=%r", str(err))
        self._sleep(self._retry_s)
        self._retry_s = min(self._retry_s * 2, MAX_RETRY_PAUSE_S)

    def _dead_letter(self, message: Message, error: CodecError) -> bool:
        reason = str(error)
        headers: Headers = [
            (DLQ_REASON, reason.encode()[:1000]),
            (DLQ_TOPIC, (message.topic() or "").encode()),
            (DLQ_PARTITION, str(message.partition()).encode()),
            (DLQ_OFFSET, str(message.offset()).encode()),
        ]
        letter = OutboxMessage(
            self._dead_letter_topic, message.key() or b"", message.value() or b""
        )
        try:
            self._dead_letters.send([letter], [headers])
        except Exception:
            log.exception("event=dead_letter_failed reason=%r", reason)
            return False
        log.warning(
            "event=dead_lettered topic=%s partition=%s offset=%s reason=%r",
            message.topic(),
            message.partition(),
            message.offset(),
            reason,
        )
        if self._metrics is not None:
            self._metrics.dead_letters.labels(
                self._metrics.role, message.topic() or "", error.kind
            ).inc()
        return True


def _after(messages: Sequence[Message]) -> list[TopicPartition]:
    """The offsets to commit after `messages`: past the last one of each partition."""
    last: dict[tuple[str, int], int] = {}
    for message in messages:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is not None and partition is not None and offset is not None:
            last[(topic, partition)] = max(last.get((topic, partition), -1), offset)
    return [TopicPartition(t, p, offset + 1) for (t, p), offset in sorted(last.items())]

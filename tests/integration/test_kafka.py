"""The Kafka adapters against the real 3-broker cluster of scripts/dev-services: producer
and consumer through the codec, the dead-letter topic, kafka-admin's topics, and the loss of
a broker."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from stockalert.adapters.kafka.admin import CheckCluster, KafkaAdministrator, check_cluster
from stockalert.adapters.kafka.codec import encode
from stockalert.adapters.kafka.consumer import (
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_TOPIC,
    ConsumerSettings,
    KafkaEventConsumer,
)
from stockalert.adapters.kafka.producer import KafkaProducer, ProducerSettings
from stockalert.adapters.kafka.topics import Topics
from stockalert.adapters.outbox import OutboxMessage
from stockalert.adapters.telemetry import Metrics
from stockalert.containers import no_storage
from stockalert.domain.events import Event, PriceUpdated
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.sharding import shard_of
from tests.integration.kafka_cluster import (
    cluster_lock,
    dev_services,
    fresh_topics,
    kafka_bootstrap,
)
from tests.metrics import samples
from tests.processes import wait_for

AT = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def price(n: int, ticker: str = "AAPL") -> PriceUpdated:
    return PriceUpdated(Quote(Ticker(ticker), 100.0 + n, AT + timedelta(minutes=n)))


def message(event: Event, topics: Topics) -> OutboxMessage:
    """The message of an event the codec publishes."""
    encoded = encode(event, topics)
    assert encoded is not None
    return encoded


@pytest.fixture
def producer(kafka: str) -> Iterator[KafkaProducer]:
    made = KafkaProducer(ProducerSettings(kafka, client_id="test"))
    yield made
    made.close()


def consumer(
    kafka: str,
    topics: Topics,
    producer: KafkaProducer,
    handle: Callable[[Event], None],
    group: str | None = None,
) -> KafkaEventConsumer:
    settings = ConsumerSettings(kafka, group or f"test-{uuid.uuid4().hex[:8]}", "test")
    return KafkaEventConsumer(
        settings,
        [topics.to_alert_system],
        handle,
        producer,
        topics.dead_letter,
        sleep=lambda s: None,
    )


def consume_until(reader: KafkaEventConsumer, done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        reader.poll_once(0.5)


def raw_messages(kafka: str, topic: str, count: int) -> list[Message]:
    """The first `count` messages of a one-partition topic, read without a group."""
    reader = Consumer(
        {"bootstrap.servers": kafka, "group.id": "test-reader", "enable.auto.commit": False}
    )
    reader.assign([TopicPartition(topic, 0, 0)])
    found: list[Message] = []
    deadline = time.monotonic() + 30
    while len(found) < count and time.monotonic() < deadline:
        found += [m for m in reader.consume(num_messages=count, timeout=0.5) if m.error() is None]
    reader.close()
    return found


def headers_of(message: Message) -> dict[str, bytes]:
    """A message's headers by name (values as bytes)."""
    found = message.headers() or []
    pairs = found.items() if isinstance(found, dict) else found
    return {name: value for name, value in pairs if isinstance(value, bytes)}


def test_events_go_through_kafka_in_order_and_a_committed_offset_is_not_read_again(
    kafka: str, topics: Topics, producer: KafkaProducer
) -> None:
    """Five quotes of one ticker arrive decoded and in order; after the commits, the group
    starts past them."""
    events = [price(n) for n in range(5)]
    messages = [encode(e, topics) for e in events]
    delivered = producer.send([m for m in messages if m is not None])
    assert len({(d.topic, d.partition) for d in delivered}) == 1  # one key, one partition

    seen: list[Event] = []
    group = f"test-{uuid.uuid4().hex[:8]}"
    first = consumer(kafka, topics, producer, seen.append, group)
    consume_until(first, lambda: len(seen) == 5, "five events")
    first.close()
    assert seen == events

    again: list[Event] = []
    second = consumer(kafka, topics, producer, again.append, group)
    producer.send([message(price(5), topics)])
    consume_until(second, lambda: len(again) >= 1, "the sixth event")
    second.close()
    assert again == [price(5)]


def test_a_poison_message_goes_to_the_dead_letter_topic_and_the_consumer_moves_on(
    kafka: str, topics: Topics, producer: KafkaProducer
) -> None:
    """Garbage and an unknown version each land in the dead-letter topic with the reason,
    the source topic, partition and offset; the good message after them is handled."""
    bad = [b"\x00not json", b'{"type": "PriceUpdated", "version": 9}']
    good = encode(price(1), topics)
    assert good is not None
    sent = producer.send([OutboxMessage(topics.to_alert_system, b"AAPL", v) for v in bad] + [good])

    seen: list[Event] = []
    reader = consumer(kafka, topics, producer, seen.append)
    consume_until(reader, lambda: len(seen) == 1, "the good message")
    reader.close()
    assert seen == [price(1)]

    letters = raw_messages(kafka, topics.dead_letter, 2)
    assert [m.value() for m in letters] == bad
    headers = [headers_of(letter) for letter in letters]
    for found, source in zip(headers, sent, strict=False):
        assert found[DLQ_TOPIC] == topics.to_alert_system.encode()
        assert found[DLQ_PARTITION] == str(source.partition).encode()
        assert found[DLQ_OFFSET] == str(source.offset).encode()
    assert b"not UTF-8 JSON" in headers[0][DLQ_REASON]
    assert b"version 9 is not known" in headers[1][DLQ_REASON]


def test_a_message_whose_handler_fails_is_not_committed_and_comes_again(
    kafka: str, topics: Topics, producer: KafkaProducer
) -> None:
    """The database is down for the first try: the same message is handled on the second."""
    producer.send([message(price(1), topics)])
    tries: list[Event] = []

    def handle(event: Event) -> None:
        tries.append(event)
        if len(tries) == 1:
            raise RuntimeError("database unavailable")

    reader = consumer(kafka, topics, producer, handle)
    consume_until(reader, lambda: len(tries) == 2, "the retry")
    reader.close()
    assert tries == [price(1), price(1)]


def test_kafka_admin_creates_exactly_the_topics_and_a_second_run_changes_nothing(
    kafka: str,
) -> None:
    """On a cluster without them: the four topics, RF 3, min.insync.replicas 2, the
    subscription changes compacted; then nothing to do; a topic made otherwise is reported."""
    topics = Topics(prefix=f"test-{uuid.uuid4().hex[:10]}.")
    admin = KafkaAdministrator(kafka)
    try:
        first = admin.ensure_topics(topics.specs())
        second = admin.ensure_topics(topics.specs())
        health = admin.health([s.name for s in topics.specs()])
        configs = admin.configs(first.created)
    finally:
        admin.delete_topics([s.name for s in topics.specs()])

    assert first.created == sorted(s.name for s in topics.specs())
    assert (first.mismatches, second.created, second.mismatches) == ([], [], [])
    assert sorted(second.present) == first.created
    by_name = {t.name: t for t in health.topics}
    assert by_name[topics.to_alert_system].partitions == 6
    assert by_name[topics.dead_letter].partitions == 1
    assert {t.replicas for t in health.topics} == {3}
    for name, entries in configs.items():
        assert entries["min.insync.replicas"] == "2", name
        policy = "compact" if name == topics.subscription_changes else "delete"
        assert entries["cleanup.policy"] == policy, name


def test_kafka_admin_reports_an_existing_topic_with_other_settings(kafka: str) -> None:
    """A to-notifier made with 2 partitions by someone else is reported, not changed."""
    wanted = Topics(prefix=f"test-{uuid.uuid4().hex[:10]}.")
    admin = KafkaAdministrator(kafka)
    other = Topics(prefix=wanted.prefix, partitions=2, min_insync=1)
    try:
        admin.ensure_topics([s for s in other.specs() if s.name == other.to_notifier])
        report = admin.ensure_topics(wanted.specs())
    finally:
        admin.delete_topics([s.name for s in wanted.specs()])
    assert wanted.to_notifier not in report.created
    assert f"{wanted.to_notifier}: 2 partitions, expected 6" in report.mismatches
    assert f"{wanted.to_notifier}: min.insync.replicas=1, expected 2" in report.mismatches


@pytest.fixture
def whole_cluster() -> Iterator[str]:
    """The cluster for this test alone (it stops a broker); whole again afterwards."""
    bootstrap = kafka_bootstrap()
    with cluster_lock(exclusive=True):
        try:
            yield bootstrap
        finally:
            dev_services("start-broker", "3")  # a no-op when it is running


def test_losing_one_broker_loses_nothing_and_stops_nothing(
    whole_cluster: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With broker 3 killed, acks=all still succeeds (two in-sync replicas remain), the
    health check reports the under-replicated partitions; after the restart the ISR is whole
    again and every message is there."""
    kafka = whole_cluster
    with fresh_topics(kafka) as topics:
        admin = KafkaAdministrator(kafka)
        names = [topics.to_alert_system]
        producer = KafkaProducer(
            ProducerSettings(kafka, client_id="test", delivery_timeout_ms=60_000)
        )
        tickers = [f"T{n}" for n in range(12)]  # keys on every partition
        before = [encode(price(n, t), topics) for n, t in enumerate(tickers)]
        producer.send([m for m in before if m is not None])

        dev_services("kill-broker", "3")
        during = [encode(price(n + 20, t), topics) for n, t in enumerate(tickers)]
        delivered = producer.send([m for m in during if m is not None])
        assert len(delivered) == len(tickers)

        def under_replicated() -> int:
            (topic,) = admin.health(names).topics
            return topic.under_replicated

        assert wait_for(under_replicated, 60, "the dead broker's replicas out of the ISR")
        caplog.set_level(logging.INFO, logger="stockalert.adapters.kafka.admin")
        metrics = Metrics("kafka-admin")
        check_cluster(CheckCluster(), no_storage(), admin=admin, topics=topics, metrics=metrics)
        text = metrics.exposition().decode()
        assert samples(text, "stockalert_kafka_brokers_online") == {(("role", "kafka-admin"),): 2}
        under = samples(text, "stockalert_kafka_under_replicated_partitions")
        assert under[(("role", "kafka-admin"), ("topic", topics.to_alert_system))] > 0
        (cluster,) = [
            r.getMessage() for r in caplog.records if "event=kafka_cluster" in r.getMessage()
        ]
        assert "brokers=2 broker_ids=1,2" in cluster
        assert "under_replicated=0 " not in cluster  # kafka-admin's line reports them
        line = next(
            r for r in caplog.records if f"topic={topics.to_alert_system} " in r.getMessage()
        )
        assert line.levelno == logging.WARNING

        dev_services("start-broker", "3")
        wait_for(lambda: under_replicated() == 0, 90, "the ISR whole again")
        (topic,) = admin.health(names).topics
        assert set(topic.isr) == {3}
        producer.close()

        seen: list[Event] = []
        reader = KafkaEventConsumer(
            ConsumerSettings(kafka, f"test-{uuid.uuid4().hex[:8]}", "test"),
            names,
            seen.append,
            KafkaProducer(ProducerSettings(kafka)),
            topics.dead_letter,
        )
        consume_until(reader, lambda: len(seen) == 2 * len(tickers), "every message")
        reader.close()
    assert sorted(seen, key=str) == sorted(
        [price(n, t) for n, t in enumerate(tickers)]
        + [price(n + 20, t) for n, t in enumerate(tickers)],
        key=str,
    )


def test_the_consumer_stops_when_halted(
    kafka: str, topics: Topics, producer: KafkaProducer
) -> None:
    """run() returns soon after its halt event is set, leaving the group."""
    halt = threading.Event()
    reader = consumer(kafka, topics, producer, lambda event: None)
    runner = threading.Thread(target=reader.run, args=(halt,))
    runner.start()
    halt.set()
    runner.join(timeout=15)
    assert not runner.is_alive()


def test_a_key_lands_in_the_partition_its_shard_names(
    producer: KafkaProducer, topics: Topics
) -> None:
    """The producer's partition of a ticker or a user is `shard_of(key, partitions)`: what
    an alert-system or notifier instance owns follows from the partitions it was given."""
    keys = [f"T{n}" for n in range(40)] + [uuid.uuid4().hex for _ in range(40)]
    delivered = producer.send(
        [OutboxMessage(topics.to_notifier, key.encode(), b"{}") for key in keys]
    )
    assert [d.partition for d in delivered] == [shard_of(key, topics.partitions) for key in keys]

"""The transactional outbox over a real database and the real cluster: what a command or a
collection cycle commits reaches Kafka exactly once, also across a relay that dies between
sending and marking; and the roles do it as their own processes."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from sqlalchemy import Engine, func, select

from stockalert.adapters.kafka.codec import decode
from stockalert.adapters.kafka.producer import KafkaProducer, ProducerSettings
from stockalert.adapters.kafka.relay import KafkaOutboxLog, OutboxRelay, outbox_ids_of
from stockalert.adapters.kafka.topics import Topics
from stockalert.adapters.outbox import Checkpoints
from stockalert.adapters.sql import tables
from stockalert.adapters.sql.outbox import SqlOutboxStore
from stockalert.containers import Collector, in_memory_config
from stockalert.domain.commands import RecordQuotes
from stockalert.domain.events import PriceUpdated, SubscriptionSet
from stockalert.domain.model import Quote, Ticker
from tests.integration.conftest import sql_engine_for
from tests.processes import (
    clean_environ,
    free_port,
    log_events,
    ok,
    run_cli,
    spawn,
    stop,
    wait_for,
    wait_until_serving,
)
from tests.replay import write_replay
from tests.wiring import build_container

START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
SECRET = "a-token-signing-key-of-at-least-32-bytes"


class Crash(SystemExit):
    """The relay process dies here."""


class DiesAfterSending(SqlOutboxStore):
    """The relay dies once the brokers acknowledged its first batch, before marking it."""

    def publish_done(self, outbox_ids: Collection[int], checkpoints: Checkpoints) -> None:
        if outbox_ids:
            raise Crash
        super().publish_done(outbox_ids, checkpoints)


def kafka_config(kafka: str, topics: Topics) -> dict[str, Any]:
    """The configuration of the transport section for these topics."""
    return {
        "transport": "kafka",
        "kafka": {
            "bootstrap": kafka,
            "client_id": "test",
            "topics": {"prefix": topics.prefix, "partitions": 6, "replication": 3, "min_insync": 2},
            "producer": {
                "bootstrap": kafka,
                "client_id": "test",
                "linger_ms": 5,
                "compression": "lz4",
            },
            "admin_interval_s": 120.0,
            "relay_interval_s": 1.0,
        },
    }


def read_all(kafka: str, topic: str, partitions: int = 6) -> list[Message]:
    """Every message of a topic, read from its start without a group."""
    reader = Consumer(
        {"bootstrap.servers": kafka, "group.id": "test-reader", "enable.auto.commit": False}
    )
    ends = {
        p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in range(partitions)
    }
    todo = [TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0]
    found: list[Message] = []
    if todo:
        reader.assign(todo)
        deadline = time.monotonic() + 30
        while len(found) < sum(ends.values()) and time.monotonic() < deadline:
            found += [m for m in reader.consume(num_messages=500, timeout=0.5) if m.error() is None]
    reader.close()
    return found


def outbox_ids(messages: list[Message]) -> Counter[int]:
    return Counter(i for message in messages for i in outbox_ids_of(message))


@pytest.fixture(params=["sqlite", "mariadb"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    return sql_engine_for(str(request.param), tmp_path, request)


def test_a_relay_that_dies_between_sending_and_marking_leaves_each_change_once_in_kafka(
    engine: Engine, kafka: str, topics: Topics
) -> None:
    """30 quotes committed with their outbox rows; a relay dies after its first batch of 10
    was acknowledged; the next relay sends the other 20: every quote is in the topic once."""
    url = engine.url.render_as_string(hide_password=False)
    config = in_memory_config(
        storage="sql", db_url=url, read_db_url=url, **kafka_config(kafka, topics)
    )
    collector = build_container(Collector, config)
    for cycle in range(3):
        quotes = tuple(
            Quote(Ticker(f"T{n}"), 100.0 + cycle, START + timedelta(minutes=cycle))
            for n in range(10)
        )
        collector.bus().handle(RecordQuotes(quotes))
    now = datetime.now(UTC)
    written = [row.outbox_id for row in SqlOutboxStore(engine, lambda: now).pending(100)]
    assert len(written) == 30
    producer = KafkaProducer(ProducerSettings(kafka, client_id="test"))
    names = [topics.to_alert_system, topics.to_notifier, topics.subscription_changes]
    dying = OutboxRelay(
        DiesAfterSending(engine, lambda: now),
        KafkaOutboxLog(producer, kafka),
        names,
        "a",
        lambda: now,
        batch=10,
    )
    with pytest.raises(Crash):
        dying.publish_pending()

    later = now + timedelta(minutes=5)  # the dead relay's lease has expired
    relay = OutboxRelay(
        SqlOutboxStore(engine, lambda: later),
        KafkaOutboxLog(producer, kafka),
        names,
        "b",
        lambda: later,
        batch=10,
    )
    assert relay.publish_pending() == 20
    producer.close()
    collector.shutdown_resources()

    messages = read_all(kafka, topics.to_alert_system)
    assert outbox_ids(messages) == Counter(written)  # each exactly once
    assert {type(decode(m.value())) for m in messages} == {PriceUpdated}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables.outbox)).scalar_one() == 0


@pytest.fixture
def roles(tmp_path: Path, kafka: str, topics: Topics) -> Iterator[dict[str, Any]]:
    """command-api and collector as processes on one SQLite file, talking through Kafka."""
    prices = write_replay(
        tmp_path / "prices.csv", [{"AAPL": 185.0}] * 30 + [{"AAPL": 186.0}, {"AAPL": 191.5}], START
    )
    address = f"127.0.0.1:{free_port()}"
    env = clean_environ() | {
        "STOCKALERT_DB_URL": f"sqlite:///{tmp_path / 'stockalert.db'}",
        "STOCKALERT_AUTH_SECRET": SECRET,
        "STOCKALERT_GRPC_ADDR": address,
        "STOCKALERT_PRICE_SOURCE": f"replay:{prices}",
        "STOCKALERT_COLLECT_INTERVAL": "0.2",
        "STOCKALERT_KAFKA_BOOTSTRAP": kafka,
        "STOCKALERT_KAFKA_TOPIC_PREFIX": topics.prefix,
        "STOCKALERT_OUTBOX_INTERVAL": "0.5",
        "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "cli"),
    }
    ok(run_cli(env, "db", "upgrade"))
    processes = {
        role: spawn(env, tmp_path, tmp_path / f"{role}.log", "serve", role, "-v")
        for role in ("command-api", "collector")
    }
    try:
        wait_until_serving(address, processes["command-api"], timeout=30)
        yield {"env": env, "processes": processes, "logs": tmp_path}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_command_api_and_the_collector_publish_through_kafka(
    roles: dict[str, Any], kafka: str, topics: Topics
) -> None:
    """A new subscription reaches the compacted topic (key = subscription id); every stored
    quote reaches to-alert-system once, in order, key = ticker; SIGTERM stops both, exit 0."""
    env = roles["env"]
    ok(run_cli(env, "register", "ann@example.com", "--password-stdin", stdin="password123\n"))
    watched = json.loads(ok(run_cli(env, "--json", "watch", "AAPL", "--high", "190")))
    subscription_id = watched["subscription"]["subscription_id"]

    def changes() -> list[Message]:
        return read_all(kafka, topics.subscription_changes)

    (change,) = wait_for(changes, 30, "the subscription change on Kafka")
    assert change.key() == subscription_id.encode()
    event = decode(change.value())
    assert isinstance(event, SubscriptionSet)
    assert event.subscription.high_value == 190.0

    def all_quotes() -> list[Message]:
        found = read_all(kafka, topics.to_alert_system)
        return found if len(found) >= 32 else []

    quotes = wait_for(
        all_quotes,
        60,
        "the 32 quotes of the replay on to-alert-system",
        logs=[roles["logs"] / "collector.log"],
    )
    assert {m.key() for m in quotes} == {b"AAPL"}
    prices = [decode(m.value()) for m in sorted(quotes, key=lambda m: m.offset() or 0)]
    assert [e.quote.price for e in prices if isinstance(e, PriceUpdated)] == [185.0] * 30 + [
        186.0,
        191.5,
    ]

    for role, process in roles["processes"].items():
        assert stop(process) == 0, role
        log = (roles["logs"] / f"{role}.log").read_text()
        assert "Traceback" not in log, log
        assert log_events(roles["logs"] / f"{role}.log", "stopped") == 1


def test_kafka_admin_runs_as_its_own_process(tmp_path: Path, kafka: str) -> None:
    """`serve kafka-admin` creates the topics of its prefix and logs the cluster's health
    (three brokers, nothing under-replicated); SIGTERM ends it with exit 0."""
    prefix = f"test-{uuid.uuid4().hex[:10]}."
    env = clean_environ() | {
        "STOCKALERT_KAFKA_BOOTSTRAP": kafka,
        "STOCKALERT_KAFKA_TOPIC_PREFIX": prefix,
    }
    log = tmp_path / "kafka-admin.log"
    process = spawn(env, tmp_path, log, "serve", "kafka-admin")
    try:
        wait_for(lambda: log_events(log, "kafka_topic") == 4, 60, "the health lines", logs=[log])
        assert stop(process) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        from stockalert.adapters.kafka.admin import KafkaAdministrator  # noqa: PLC0415

        KafkaAdministrator(kafka).delete_topics([s.name for s in Topics(prefix=prefix).specs()])
    text = log.read_text()
    assert log_events(log, "kafka_topic_created") == 4
    assert "event=kafka_cluster brokers=3 broker_ids=1,2,3" in text
    assert "under_replicated=0 offline=0" in text
    assert "Traceback" not in text

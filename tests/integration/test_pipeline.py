"""Collector → to-alert-system → alert-system → to-notifier → notifier → SMTP, each role a real
process on the real cluster, MariaDB and an SMTP server: exactly one e-mail per crossing,
whatever is killed (the crash points of ADR 11), whatever is redelivered, however many
instances share the work. See `pipeline.py` for the harness."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from stockalert.adapters.kafka.admin import KafkaAdministrator
from stockalert.adapters.kafka.producer import KafkaProducer, ProducerSettings
from stockalert.adapters.kafka.topics import Topics
from stockalert.adapters.outbox import OutboxMessage
from tests.integration.conftest import mariadb_url, worker_database_url
from tests.integration.kafka_cluster import (
    cluster_lock,
    dev_services,
    fresh_topics,
    kafka_bootstrap,
)
from tests.integration.pipeline import Pipeline, Scenario
from tests.metrics import http_get, scraped
from tests.processes import free_port, kill, log_events, wait_for
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(tmp_path: Path, topics: Topics, kafka: str) -> Iterator[Pipeline]:
    """A fresh database, this test's topics, an SMTP server; processes stopped after."""
    url = worker_database_url(mariadb_url(), "pipeline", fresh=True)
    with SmtpServer() as smtp:
        running = Pipeline(tmp_path, url, kafka, topics, smtp)
        try:
            yield running
        finally:
            running.close()


def walks(seed: int) -> Scenario:
    return Scenario.random_walks(random.Random(seed), users=30, tickers=5, steps=30)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_price_walks_mail_exactly_what_the_reference_engine_predicts(
    pipeline: Pipeline, seed: int
) -> None:
    """Random walks through the distributed path: the e-mails are exactly the notifications
    the in-memory reference engine raises for the same subscriptions and quotes."""
    scenario = walks(seed)
    expected = scenario.expected()
    assert len(expected) > 20  # the walks do cross

    pipeline.seed(scenario)
    metrics = {role: f"127.0.0.1:{free_port()}" for role in ("alert-system", "notifier")}
    for role, address in metrics.items():
        pipeline.start(role, STOCKALERT_METRICS_PORT=address)
    pipeline.feed(scenario.steps())

    pipeline.settle(expected, timeout=120)
    pipeline.check_exactly_once(expected)
    # The metrics moved with the work: each crossing counted where it was raised, each
    # e-mail where it was sent.
    alerts = scraped(metrics["alert-system"], "stockalert_alerts_total")
    assert sum(alerts.values()) == len(expected)
    assert {dict(labels)["role"] for labels in alerts} == {"alert-system"}
    sent = scraped(metrics["notifier"], "stockalert_notifications_total")
    assert sent == {(("outcome", "sent"), ("role", "notifier")): len(expected)}
    pending = scraped(metrics["notifier"], "stockalert_notifications_pending")
    assert pending == {(("role", "notifier"),): 0}
    for role in ("alert-system", "notifier"):  # ready (database and Kafka), no lag left
        assert http_get(metrics[role], "/readyz") == (200, "ready\n"), role
        lag = scraped(metrics[role], "stockalert_consumer_lag_messages")
        assert lag, role
        assert set(lag.values()) == {0}, (role, lag)


CRASH_POINTS = [
    # role, point, reached how often before the SIGKILL, resends allowed. The consumer reads
    # in batches, whose count depends on timing: the points reached once per batch are killed
    # the first time, which every run reaches (quotes, then their notifications, relayed).
    ("alert-system", "db.commit", 1, 0),  # the first batch of quotes applied
    ("alert-system", "consumer.handled", 1, 0),
    ("alert-system", "relay.published", 2, 0),  # the quotes, then notifications, relayed
    ("notifier", "consumer.handled", 1, 0),
    ("notifier", "smtp.accepted", 6, 1),
]


@pytest.mark.parametrize(
    ("role", "point", "nth", "resends"),
    CRASH_POINTS,
    ids=[f"{role}-{point}" for role, point, _, _ in CRASH_POINTS],
)
def test_a_sigkill_at_each_crash_point_then_a_restart_mails_each_crossing_once(
    pipeline: Pipeline, role: str, point: str, nth: int, resends: int
) -> None:
    """The role kills itself (SIGKILL) the nth time it reaches the crash point; restarted,
    it and the others e-mail every crossing exactly once. Only a kill between the SMTP
    server's 250 and the ledger's commit may send that one e-mail again."""
    scenario = walks(3)
    expected = scenario.expected()
    pipeline.seed(scenario)
    crashing = {"STOCKALERT_CRASH_AT": f"{point}:{nth}"}
    doomed = pipeline.start(role, **crashing)
    other = pipeline.start("notifier" if role == "alert-system" else "alert-system")
    pipeline.wait_assigned(doomed, other)  # then every quote is a message of its own
    pipeline.feed(scenario.steps())

    wait_for(
        lambda: doomed.popen.poll() is not None,
        120,
        f"{role} to die at {point}",
        logs=pipeline.logs(),
    )
    assert doomed.popen.returncode == -9, f"{role} ended otherwise: {doomed.popen.returncode}"
    pipeline.start(role)

    pipeline.settle(expected, timeout=120)
    pipeline.check_exactly_once(expected, resends_allowed=resends)


def test_a_poison_message_on_each_topic_goes_to_the_dead_letter_topic_and_roles_go_on(
    pipeline: Pipeline, topics: Topics, kafka: str
) -> None:
    """Not JSON on to-alert-system, a future version on to-notifier, garbage on the
    subscription changes: each is dead-lettered, and the crossings still go out."""
    scenario = walks(4)
    expected = scenario.expected()
    pipeline.seed(scenario)
    metrics = {role: f"127.0.0.1:{free_port()}" for role in ("alert-system", "notifier")}
    alert_system = pipeline.start("alert-system", STOCKALERT_METRICS_PORT=metrics["alert-system"])
    notifier = pipeline.start("notifier", STOCKALERT_METRICS_PORT=metrics["notifier"])
    pipeline.wait_assigned(alert_system, notifier)  # the follower reads from its start on
    producer = KafkaProducer(ProducerSettings(bootstrap=kafka, client_id="poison"))
    poison = [
        OutboxMessage(topics.to_alert_system, b"T00", b"not json"),
        OutboxMessage(topics.to_notifier, b"someone", b'{"type":"Notification","version":99}'),
        OutboxMessage(topics.subscription_changes, b"x", b"\xff\xfe"),
    ]
    producer.send(poison)
    producer.close()
    pipeline.feed(scenario.steps())

    pipeline.settle(expected, timeout=120)
    pipeline.check_exactly_once(expected)
    wait_for(
        lambda: (
            log_events(alert_system.log, "dead_lettered") == 2
            and log_events(notifier.log, "dead_lettered") == 1
        ),
        30,
        "the three poison messages dead-lettered",
        logs=pipeline.logs(),
    )
    assert alert_system.popen.poll() is None
    assert notifier.popen.poll() is None
    dead = {
        **scraped(metrics["alert-system"], "stockalert_dead_letters_total"),
        **scraped(metrics["notifier"], "stockalert_dead_letters_total"),
    }
    assert dead == {
        (("reason", "not_json"), ("role", "alert-system"), ("topic", topics.to_alert_system)): 1,
        (
            ("reason", "not_json"),
            ("role", "alert-system"),
            ("topic", topics.subscription_changes),
        ): 1,
        (("reason", "unknown_version"), ("role", "notifier"), ("topic", topics.to_notifier)): 1,
    }


def test_two_alert_systems_and_two_notifiers_one_of_each_killed_mail_exactly_once(
    pipeline: Pipeline,
) -> None:
    """Two instances of each role split the partitions; mid-stream one of each is SIGKILLed:
    its partitions move to the survivor (rebalance), which resumes from the stored states
    and the ledger. The e-mails are exactly the single-instance ones (the reference engine's);
    only the notifier's e-mail in flight at its kill may go out twice."""
    scenario = Scenario.random_walks(random.Random(5), users=60, tickers=8, steps=40)
    expected = scenario.expected()
    pipeline.seed(scenario)
    alert_systems = [pipeline.start("alert-system") for _ in range(2)]
    notifiers = [pipeline.start("notifier") for _ in range(2)]
    pipeline.wait_assigned(*alert_systems, *notifiers)  # each has partitions of its own
    steps = scenario.steps()
    half = len(steps) // 2
    pipeline.feed(steps[:half])
    wait_for(lambda: len(pipeline.mailed()) >= len(expected) // 4, 120, "a quarter of the e-mails")

    kill(alert_systems[0].popen)
    kill(notifiers[0].popen)
    pipeline.feed(steps[half:])

    pipeline.settle(expected, timeout=180)
    pipeline.check_exactly_once(expected, resends_allowed=1)
    for survivor in (alert_systems[1], notifiers[1]):
        assert survivor.popen.poll() is None
        # It took the partitions of the killed one over (a second assignment).
        assert log_events(survivor.log, "kafka_partitions_assigned") >= 2


@pytest.fixture
def pipeline_alone(tmp_path: Path) -> Iterator[Pipeline]:
    """A pipeline on the cluster for this test alone (it kills a broker; whole again after)."""
    bootstrap = kafka_bootstrap()
    url = worker_database_url(mariadb_url(), "pipeline", fresh=True)
    with cluster_lock(exclusive=True), fresh_topics(bootstrap) as topics, SmtpServer() as smtp:
        running = Pipeline(tmp_path, url, bootstrap, topics, smtp)
        try:
            yield running
        finally:
            running.close()
            dev_services("start-broker", str(KILLED_BROKER))  # a no-op when it is running


KILLED_BROKER = 2
STORM = 10_000


def test_a_broker_killed_during_ten_thousand_notifications_loses_and_repeats_none(
    pipeline_alone: Pipeline,
) -> None:
    """10,000 crossings at once (10,000 users on 4 tickers); when 2,000 e-mails are out one
    broker is SIGKILLed: the stream keeps flowing on the other two (RF 3, min ISR 2), and in
    the end the SMTP server has every e-mail exactly once."""
    pipeline = pipeline_alone
    scenario = Scenario.storm(users=STORM, tickers=4)
    expected = scenario.expected()
    assert len(expected) == STORM
    pipeline.seed(scenario)
    alert_system = pipeline.start("alert-system")
    notifier = pipeline.start("notifier")
    pipeline.wait_assigned(alert_system, notifier, timeout=120)
    pipeline.feed(scenario.steps())
    smtp = pipeline.smtp

    wait_for(lambda: len(smtp.messages) >= 2_000, 360, "2,000 e-mails", logs=pipeline.logs())
    dev_services("kill-broker", str(KILLED_BROKER))
    at_kill = len(smtp.messages)
    wait_for(
        lambda: len(smtp.messages) >= at_kill + 2_000,
        360,
        "2,000 more e-mails with a broker down",
        logs=pipeline.logs(),
    )
    dev_services("start-broker", str(KILLED_BROKER))

    pipeline.settle(expected, timeout=600)
    pipeline.check_exactly_once(expected)
    assert alert_system.popen.poll() is None
    assert notifier.popen.poll() is None


def test_roles_started_before_their_topics_exist_wait_for_kafka_admin(
    tmp_path: Path, kafka: str
) -> None:
    """An alert-system and a notifier started before kafka-admin created the topics say so
    and wait; once the topics exist they join their groups and mail what the quotes raise."""
    topics = Topics(prefix=f"test-{uuid.uuid4().hex[:10]}.")
    url = worker_database_url(mariadb_url(), "pipeline", fresh=True)
    admin = KafkaAdministrator(kafka)
    with SmtpServer() as smtp:
        pipeline = Pipeline(tmp_path, url, kafka, topics, smtp)
        try:
            scenario = walks(5)
            pipeline.seed(scenario)
            early = [pipeline.start("alert-system"), pipeline.start("notifier")]
            for process in early:
                wait_for(
                    partial(log_events, process.log, "kafka_not_ready"),
                    60,
                    f"{process.log.name}: waiting for the topics",
                    logs=pipeline.logs(),
                )
            admin.ensure_topics(topics.specs())
            pipeline.wait_assigned(*early, timeout=90)
            pipeline.feed(scenario.steps())
            pipeline.settle(scenario.expected(), timeout=120)
            pipeline.check_exactly_once(scenario.expected())
        finally:
            pipeline.close()
            admin.delete_topics([spec.name for spec in topics.specs()])

"""Collector → to-alert-system → alert-system → to-notifier → notifier → SMTP, each role a real
process on the real cluster, MariaDB and an SMTP server: exactly one e-mail per crossing,
whatever is killed (the crash points of ADR 11), whatever is redelivered, however many
instances share the work. See `pipeline.py` for the harness."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockalert.adapters.kafka.producer import KafkaProducer, ProducerSettings
from stockalert.adapters.kafka.topics import Topics
from stockalert.adapters.outbox import OutboxMessage
from tests.integration.conftest import mariadb_url, worker_database_url
from tests.integration.pipeline import Pipeline, Scenario
from tests.processes import log_events, wait_for
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
    pipeline.start("alert-system")
    pipeline.start("notifier")
    pipeline.feed(scenario.steps())

    pipeline.settle(expected, timeout=120)
    pipeline.check_exactly_once(expected)


CRASH_POINTS = [
    # role, point, reached how often before the SIGKILL, resends allowed
    ("alert-system", "db.commit", 6, 0),
    ("alert-system", "consumer.handled", 6, 0),
    ("alert-system", "relay.published", 2, 0),
    ("notifier", "consumer.handled", 6, 0),
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
    alert_system = pipeline.start("alert-system")
    notifier = pipeline.start("notifier")
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

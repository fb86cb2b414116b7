"""The whole distributed system end to end: all seven roles, each its own OS process
(`stockalert serve ROLE`), on MariaDB, the 3-broker Kafka cluster and a real SMTP server.

kafka-admin creates the topics; a user registers and watches two tickers through the CLI
(commands to command-api, queries to query-api); 400 more users are stored through the
library (registering them through the API would time Argon2); the collector replays a price
file in which AAPL crosses, oscillates inside the re-arm band, re-arms and crosses again,
MSFT crosses its low, and the 400 users' ticker crosses all at once. Mid-stream the notifier
is SIGKILLed and restarted; then a broker is SIGKILLed and a second price file crosses
everything again. The SMTP server must have exactly the e-mails the reference engine
predicts (one resend at most: the e-mail in flight when the notifier was killed), and every
role must exit 0 on SIGTERM. Every role logs JSON (STOCKALERT_LOG_FORMAT=json), in which one
correlation id is followed from the collector's line through the alert-system's and the
notifier's to the delivered e-mail.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stockalert.adapters.kafka.admin import KafkaAdministrator
from stockalert.adapters.kafka.topics import Topics
from stockalert.domain.alerting.reference import ReferenceAlertEngine
from stockalert.domain.model import Quote, Subscription, Ticker
from tests.integration.conftest import mariadb_url, worker_database_url
from tests.integration.kafka_cluster import cluster_lock, dev_services, kafka_bootstrap
from tests.integration.pipeline import START, Pipeline, Scenario
from tests.processes import (
    free_port,
    kill,
    log_events,
    log_records,
    ok,
    run_cli,
    wait_for,
    wait_until_serving,
)
from tests.replay import write_replay
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.integration

ANN, PASSWORD = "ann@example.com", "password123"
SECRET = "an-end-to-end-token-signing-key-32-bytes"
BULK = 400  # users watching S00 above 101 (Scenario.storm)
KILLED_BROKER = 3
DEADLINE_S = 180.0

# AAPL above 190 (re-arms at or below 188.10), MSFT below 400; S00 is the 400 users' ticker.
FIRST = [
    {"AAPL": 185.0, "MSFT": 405.0, "S00": 100.0},
    {"AAPL": 191.0, "MSFT": 404.0, "S00": 102.0},  # AAPL crosses; 400 crossings on S00
    {"AAPL": 190.5, "MSFT": 399.0, "S00": 102.5},  # MSFT crosses
    {"AAPL": 191.5, "MSFT": 398.0, "S00": 103.0},  # AAPL inside the band: nothing
    {"AAPL": 190.2, "MSFT": 397.0, "S00": 102.0},
    {"AAPL": 187.0, "MSFT": 398.0, "S00": 99.0},  # AAPL and S00 re-arm
    {"AAPL": 192.0, "MSFT": 399.0, "S00": 99.5},  # AAPL crosses again
]
SECOND = [
    {"AAPL": 187.0, "MSFT": 405.0, "S00": 99.0},  # AAPL and MSFT re-arm
    {"AAPL": 193.0, "MSFT": 390.0, "S00": 101.5},  # everything crosses, a broker down
]


@pytest.fixture
def system(tmp_path: Path) -> Iterator[Pipeline]:
    """A fresh database, topics of a fresh prefix that kafka-admin will create, an SMTP
    server; the cluster for this test alone (it kills a broker: whole again after)."""
    bootstrap = kafka_bootstrap()
    url = worker_database_url(mariadb_url(), "end_to_end", fresh=True)
    topics = Topics(prefix=f"test-e2e-{free_port()}.")
    with cluster_lock(exclusive=True), SmtpServer() as smtp:
        running = Pipeline(tmp_path, url, bootstrap, topics, smtp)
        running.env |= {
            "STOCKALERT_AUTH_SECRET": SECRET,
            "STOCKALERT_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "STOCKALERT_QUERY_ADDR": f"127.0.0.1:{free_port()}",
            "STOCKALERT_COLLECT_INTERVAL": "0.5",
            "XDG_CONFIG_HOME": str(tmp_path / "cli"),
            "STOCKALERT_LOG_FORMAT": "json",  # every role's lines as JSON objects
        }
        try:
            yield running
        finally:
            running.close()
            dev_services("start-broker", str(KILLED_BROKER))  # a no-op when it is running
            KafkaAdministrator(bootstrap).delete_topics([s.name for s in topics.specs()])


def expected_ids(subs: list[Subscription], cycles: list[list[Quote]]) -> set[str]:
    engine = ReferenceAlertEngine()
    for sub in subs:
        engine.upsert(sub)
    return {n.notification_id for cycle in cycles for q in cycle for n in engine.apply(q)}


def as_quotes(rows: list[dict[str, float]], first: int) -> list[list[Quote]]:
    """The quotes of a replay file written from `rows` starting at START + first minutes."""
    return [
        [Quote(Ticker(t), p, START + timedelta(minutes=first + n)) for t, p in row.items()]
        for n, row in enumerate(rows)
    ]


def records(system: Pipeline, role: str, event: str) -> list[dict[str, Any]]:
    """The `event` lines of every instance of `role` (their JSON logs)."""
    return [r for p in system.processes if p.role == role for r in log_records(p.log, event)]


def follow_correlation_ids(system: Pipeline) -> None:
    """One id from the collector's line of the quote that made AAPL cross (191.0) through
    the alert-system's line of the alert it raised and the notifier's line of its delivery
    to the e-mail's headers; and the S00 quote's one id in all its 400 alerts and e-mails."""
    stored = records(system, "collector", "quote_stored")
    (aapl,) = [r for r in stored if r["ticker"] == "AAPL" and float(r["price"]) == 191.0]
    correlation_id = aapl["correlation_id"]
    raised = records(system, "alert-system", "alert_raised")
    (alert,) = [r for r in raised if r["correlation_id"] == correlation_id]
    assert (alert["ticker"], alert["side"], alert["kind"]) == ("AAPL", "HIGH", "CROSSING")
    sent = records(system, "notifier", "notification_sent")
    deliveries = [r for r in sent if r["correlation_id"] == correlation_id]
    assert deliveries, f"no notifier line with correlation_id={correlation_id}"
    assert {r["notification_id"] for r in deliveries} == {alert["notification_id"]}
    mails = [m.message for m in system.smtp.messages if m.rcpt_tos == (ANN,)]
    (mail, *again) = [
        m for m in mails if m["X-Stockalert-Notification-Id"] == alert["notification_id"]
    ]
    assert all(m.as_bytes() == mail.as_bytes() for m in again)  # a resend is the same e-mail
    assert mail["X-Stockalert-Correlation-Id"] == correlation_id
    assert mail["Message-ID"].endswith(f"+{correlation_id}@stockalert.invalid>")

    s00 = min(  # the first 102.0 crosses (the second, in row 5, is still above)
        (r for r in stored if r["ticker"] == "S00" and float(r["price"]) == 102.0),
        key=lambda r: str(r["quoted_at"]),
    )
    storm = {r["notification_id"] for r in raised if r["correlation_id"] == s00["correlation_id"]}
    assert len(storm) == BULK
    tagged = {
        m.message["X-Stockalert-Notification-Id"]
        for m in system.smtp.messages
        if m.message["X-Stockalert-Correlation-Id"] == s00["correlation_id"]
    }
    assert tagged == storm


def test_every_role_its_own_process_mails_each_crossing_once_through_kills(
    system: Pipeline, tmp_path: Path
) -> None:
    env = system.env

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run_cli(env, "--json", *args, stdin=stdin)

    def wait(condition: Any, what: str, timeout: float = DEADLINE_S) -> Any:
        return wait_for(condition, timeout, what, logs=system.logs())

    roles = {"kafka-admin": system.start("kafka-admin")}
    wait(lambda: log_events(roles["kafka-admin"].log, "kafka_cluster"), "the topics created")
    for role in ("command-api", "query-api"):
        roles[role] = system.start(role)
    wait_until_serving(env["STOCKALERT_GRPC_ADDR"], roles["command-api"].popen, timeout=60)
    wait_until_serving(env["STOCKALERT_QUERY_ADDR"], roles["query-api"].popen, timeout=60)

    # A user through the CLI; 400 more stored through the library.
    ok(cli("register", ANN, "--password-stdin", stdin=PASSWORD + "\n"))
    ok(cli("watch", "AAPL", "--high", "190"))
    ok(cli("watch", "MSFT", "--low", "400"))
    listed = json.loads(ok(cli("subscriptions")))["subscriptions"]
    assert sorted(s["ticker"] for s in listed) == ["AAPL", "MSFT"]
    bulk = Scenario.storm(users=BULK, tickers=1)
    system.seed(bulk)
    with system.collector.core.uow() as uow:
        subs = uow.subscriptions.all()
    assert len(subs) == BULK + 2

    for role in ("alert-system", "notifier", "cleaner"):
        roles[role] = system.start(role)
    system.wait_assigned(roles["alert-system"], roles["notifier"], timeout=120)

    # The first price file; the notifier SIGKILLed mid-stream, then restarted.
    first = write_replay(tmp_path / "first.csv", FIRST, START)
    roles["collector"] = system.start("collector", STOCKALERT_PRICE_SOURCE=f"replay:{first}")
    expected_first = expected_ids(subs, as_quotes(FIRST, 0))
    assert len(expected_first) == BULK + 3
    wait(lambda: len(system.smtp.messages) >= 50, "50 e-mails")
    kill(roles["notifier"].popen)
    assert len(system.smtp.messages) < len(expected_first), "not killed mid-stream"
    roles["notifier"] = system.start("notifier")
    system.settle(expected_first, timeout=DEADLINE_S)
    follow_correlation_ids(system)

    # A broker SIGKILLed; the second price file crosses everything again.
    dev_services("kill-broker", str(KILLED_BROKER))
    collector = roles["collector"].popen
    collector.terminate()
    assert collector.wait(timeout=30) == 0, "the collector did not exit 0 on SIGTERM"
    second_start = len(FIRST) + 1
    second = write_replay(tmp_path / "second.csv", SECOND, START + timedelta(minutes=second_start))
    roles["collector"] = system.start("collector", STOCKALERT_PRICE_SOURCE=f"replay:{second}")
    expected = expected_ids(subs, as_quotes(FIRST, 0) + as_quotes(SECOND, second_start))
    assert len(expected) == len(expected_first) + BULK + 2
    system.settle(expected, timeout=DEADLINE_S)
    dev_services("start-broker", str(KILLED_BROKER))

    # Exactly the predicted e-mails (the one in flight at the kill may have gone twice).
    system.check_exactly_once(expected, resends_allowed=1)
    to_ann = [r for r in system.smtp.messages if r.rcpt_tos == (ANN,)]
    assert sorted(r.message["Subject"].split()[0] for r in to_ann) == sorted(
        ["AAPL", "AAPL", "AAPL", "MSFT", "MSFT"]
    ), [r.message["Subject"] for r in to_ann]
    history = json.loads(ok(cli("notifications")))["notifications"]
    assert [n["status"] for n in history] == ["DELIVERY_STATUS_SENT"] * 5

    # SIGTERM: every role finishes, commits, closes and exits 0.
    for process in system.processes:
        if process.popen.poll() is None:
            process.popen.terminate()
    for process in system.processes:
        if process.popen.returncode == -9:
            continue  # the notifier killed on purpose
        code = process.popen.wait(timeout=30)
        assert code == 0, f"{process.log.name} exited {code}"
        assert log_events(process.log, "stopped") == 1, process.log.name

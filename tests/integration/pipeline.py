"""The distributed path as real processes: alert-system and notifier instances, each its own
OS process (`stockalert serve ROLE -v`), on MariaDB, the 3-broker cluster and an aiosmtpd
server. The test plays the other roles through the library: it stores users and
subscriptions, and quotes as the collector does (RecordQuotes: the quotes and their
PriceUpdated outbox rows in one transaction; the alert-system's relay publishes them).

What must come out is computed by the in-memory reference engine (`domain/alerting/
reference.py`) from the same subscriptions and quotes: the set of notification ids, each to
be e-mailed exactly once (the SMTP server sees Message-IDs derived from them).
"""

from __future__ import annotations

import random
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import attrs
from sqlalchemy import Engine, func, select

from stockalert.adapters.kafka.topics import Topics
from stockalert.adapters.sql import tables
from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.migrate import upgrade
from stockalert.containers import Collector, in_memory_config
from stockalert.domain.alerting.reference import ReferenceAlertEngine
from stockalert.domain.commands import RecordQuotes
from stockalert.domain.model import Email, Quote, Subscription, Ticker, User
from tests.processes import clean_environ, kill, log_events, spawn, wait_for
from tests.smtp_server import SmtpServer, notification_id_of, smtp_environ
from tests.wiring import build_container

START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
STEP = timedelta(minutes=1)


@attrs.frozen
class Scenario:
    """Users, their subscriptions, and quotes to feed (in time order)."""

    users: tuple[User, ...]
    subscriptions: tuple[Subscription, ...]
    quotes: tuple[Quote, ...]

    @classmethod
    def random_walks(
        cls, rng: random.Random, *, users: int, tickers: int, steps: int, per_user: int = 2
    ) -> Scenario:
        """Random walks (±2 % a step) around 100; each user watches `per_user` tickers with
        thresholds 1-6 % away on one or both sides."""
        names = [f"T{n:02d}" for n in range(tickers)]
        people = tuple(_user(n) for n in range(users))
        subs = []
        for person in people:
            for ticker in rng.sample(names, per_user):
                high = round(100 * (1 + rng.uniform(0.01, 0.06)), 2)
                low = round(100 * (1 - rng.uniform(0.01, 0.06)), 2)
                sides = rng.choice(("high", "low", "both"))
                subs.append(
                    Subscription(
                        uuid.uuid4().hex,
                        person.user_id,
                        person.email,
                        Ticker(ticker),
                        high_value=high if sides != "low" else None,
                        low_value=low if sides != "high" else None,
                    )
                )
        prices = dict.fromkeys(names, 100.0)
        quotes = []
        for step in range(1, steps + 1):
            for ticker in names:
                prices[ticker] = round(prices[ticker] * (1 + rng.gauss(0, 0.02)), 2)
                quotes.append(Quote(Ticker(ticker), prices[ticker], START + step * STEP))
        return cls(people, tuple(subs), tuple(quotes))

    @classmethod
    def storm(cls, *, users: int, tickers: int) -> Scenario:
        """Every user watches one ticker above 101; one quote at 102 per ticker: one
        notification per user."""
        names = [f"S{n:02d}" for n in range(tickers)]
        people = tuple(_user(n) for n in range(users))
        subs = tuple(
            Subscription(
                uuid.uuid4().hex,
                p.user_id,
                p.email,
                Ticker(names[n % tickers]),
                high_value=101.0,
            )
            for n, p in enumerate(people)
        )
        quotes = tuple(Quote(Ticker(t), 102.0, START + STEP) for t in names)
        return cls(people, subs, quotes)

    def expected(self) -> set[str]:
        """The notification ids the reference engine raises for these quotes."""
        engine = ReferenceAlertEngine()
        for sub in self.subscriptions:
            engine.upsert(sub)
        ids: list[str] = []
        for quote in sorted(self.quotes, key=lambda q: q.quoted_at):
            ids += [n.notification_id for n in engine.apply(quote)]
        assert len(ids) == len(set(ids))
        return set(ids)

    def steps(self) -> list[tuple[Quote, ...]]:
        """The quotes grouped by time: one collection cycle each."""
        by_time: dict[datetime, list[Quote]] = {}
        for quote in self.quotes:
            by_time.setdefault(quote.quoted_at, []).append(quote)
        return [tuple(by_time[at]) for at in sorted(by_time)]


def _user(n: int) -> User:
    return User(uuid.uuid4().hex, Email(f"user{n}@example.com"), "not-a-hash", START)


def kafka_settings(bootstrap: str, topics: Topics) -> dict[str, Any]:
    """The `kafka` configuration section of a library container on these topics."""
    kafka = in_memory_config()["kafka"]
    return {
        **kafka,
        "bootstrap": bootstrap,
        "topics": {**kafka["topics"], "prefix": topics.prefix},
        "producer": {**kafka["producer"], "bootstrap": bootstrap},
        "consumer": {**kafka["consumer"], "bootstrap": bootstrap},
    }


@attrs.define
class Process:
    """One role instance: its process and its log."""

    role: str
    popen: subprocess.Popen[bytes]
    log: Path


class Pipeline:
    """Role processes on one database, one set of topics and one SMTP server."""

    def __init__(
        self, tmp_path: Path, database_url: str, kafka: str, topics: Topics, smtp: SmtpServer
    ) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.smtp = smtp
        self.engine: Engine = make_engine(database_url)
        upgrade(self.engine)  # as the roles would at start; the test stores first
        self.processes: list[Process] = []
        self.env = clean_environ() | {
            "STOCKALERT_DB_URL": database_url,
            "STOCKALERT_KAFKA_BOOTSTRAP": kafka,
            "STOCKALERT_KAFKA_TOPIC_PREFIX": topics.prefix,
            "STOCKALERT_KAFKA_PARTITIONS": str(topics.partitions),
            "STOCKALERT_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "STOCKALERT_OUTBOX_INTERVAL": "0.2",
            "STOCKALERT_DELIVERY_INTERVAL": "0.5",
            "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
            "STOCKALERT_SMTP_BUILD_PROCESSES": "0",
            **smtp_environ(smtp, pause_s=0.5),
        }
        config = in_memory_config(
            storage="sql",
            db_url=database_url,
            read_db_url=database_url,
            transport="kafka",
            kafka=kafka_settings(kafka, topics),
        )
        self.collector = build_container(Collector, config)

    # ----- the library side -------------------------------------------------------------------

    def seed(self, scenario: Scenario, batch: int = 2000) -> None:
        """Users and subscriptions stored as they are before the roles start (no events)."""
        uow = self.collector.core.uow
        for chunk in _chunks(scenario.users, batch):
            with uow() as tx:
                for user in chunk:
                    tx.users.add(user)
                tx.commit()
        for chunk in _chunks(scenario.subscriptions, batch):
            with uow() as tx:
                for sub in chunk:
                    tx.subscriptions.save(sub)
                tx.commit()

    def feed(self, steps: Iterable[Sequence[Quote]]) -> None:
        """Store the quotes as the collector does, one cycle per step."""
        bus = self.collector.bus()
        for quotes in steps:
            bus.handle(RecordQuotes(tuple(quotes)))

    # ----- the role processes ------------------------------------------------------------------

    def start(self, role: str, **env: str) -> Process:
        """`stockalert serve ROLE -v` with the pipeline's environment (and `env`)."""
        count = sum(p.role == role for p in self.processes) + 1
        log = self.tmp_path / f"{role}-{count}.log"
        popen = spawn(self.env | env, self.tmp_path, log, "serve", role, "-v")
        process = Process(role, popen, log)
        self.processes.append(process)
        return process

    def wait_assigned(self, *processes: Process, timeout: float = 60) -> None:
        """Until each process has been given partitions by its group (the first time)."""
        for process in processes:
            wait_for(
                partial(log_events, process.log, "kafka_partitions_assigned"),
                timeout,
                f"{process.log.name}: partitions assigned",
                logs=self.logs(),
            )

    def logs(self) -> list[Path]:
        return [p.log for p in self.processes]

    def close(self) -> None:
        """Stop every process still running (SIGTERM, then SIGKILL), close the database."""
        for process in self.processes:
            if process.popen.poll() is None:
                process.popen.terminate()
        for process in self.processes:
            try:
                process.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                kill(process.popen)
        self.collector.shutdown_resources()
        self.engine.dispose()

    # ----- what came out -----------------------------------------------------------------------

    def mailed(self) -> Counter[str]:
        """How often each notification id reached the SMTP server."""
        return Counter(notification_id_of(r.message["Message-ID"]) for r in self.smtp.messages)

    def ledger(self) -> dict[str, str]:
        """Notification id -> status, as the ledger has them."""
        n = tables.notifications.c
        with self.engine.connect() as conn:
            return {
                row.notification_id: row.status
                for row in conn.execute(select(n.notification_id, n.status))
            }

    def outbox_rows(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(tables.outbox)) or 0)

    def statuses(self) -> Counter[str]:
        """How many ledger rows have each status (one cheap query)."""
        n = tables.notifications.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(n.status, func.count()).group_by(n.status))
            return Counter({str(status): int(count) for status, count in rows})

    def settle(self, expected: set[str], timeout: float) -> None:
        """Wait until as many notifications as expected are SENT in the ledger, none is
        PENDING and the outbox is empty: then every e-mail that will ever go out has reached
        the server (a message is accepted before its ledger row says SENT). Which ones they
        are is `check_exactly_once`'s business."""

        def done() -> bool:
            statuses = self.statuses()
            return (
                statuses["SENT"] >= len(expected)
                and not statuses["PENDING"]
                and not self.outbox_rows()
            )

        wait_for(done, timeout, f"{len(expected)} notifications SENT", poll_s=0.5, logs=self.logs())

    def check_exactly_once(self, expected: set[str], resends_allowed: int = 0) -> Counter[str]:
        """Every expected notification e-mailed, nothing else, nothing twice (but the e-mails
        in flight at an `smtp.accepted` kill: `resends_allowed`)."""
        mailed = self.mailed()
        missing = expected - set(mailed)
        unexpected = set(mailed) - expected
        twice = {k: c for k, c in mailed.items() if c > 1}
        assert not missing, f"{len(missing)} of {len(expected)} e-mails lost: {sorted(missing)[:5]}"
        assert not unexpected, f"{len(unexpected)} unexpected e-mails: {sorted(unexpected)[:5]}"
        assert set(self.ledger()) == expected, "the ledger holds other notifications"
        assert sum(c - 1 for c in twice.values()) <= resends_allowed, f"sent twice: {twice}"
        return mailed


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

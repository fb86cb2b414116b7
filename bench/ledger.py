"""Benchmark: the notification ledger under delivery, one commit per outcome versus per 10.

    python -m bench.ledger [--notifications N] [--db sqlite|mariadb|both]

What recording each e-mail's outcome as it comes (so a crash resends one e-mail, never a
batch) costs the notifier. N PENDING notifications of N users are delivered by
`RetryPendingNotifications` through the real handlers and SQL ledger, to a mailer that
accepts everything at once (no SMTP: the ledger alone is measured). "grouped" runs the same
handlers with the outcomes stored ten at a time, as before. SQLite is a file in a temporary
folder; MariaDB is STOCKALERT_TEST_DB_URL's server (scripts/dev-services), in a database of
its own. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from bench.email import notifications
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from stockalert.adapters.memory.fakes import ManualClock
from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.migrate import upgrade
from stockalert.adapters.sql.uow import SqlUnitOfWork
from stockalert.bootstrap import notification_delivery
from stockalert.domain.commands import RetryPendingNotifications
from stockalert.domain.handlers import delivery
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import DeliveryStatus, Email, Notification, NotificationRecord, User
from stockalert.domain.ports import MailOutcome

NOW = datetime(2026, 1, 2, 16, 0, tzinfo=UTC)


class AcceptingMailer:
    """Accepts every message at once: what is left to measure is the ledger."""

    def send_many(self, batch: Sequence[Notification]) -> Iterator[MailOutcome]:
        for _ in batch:
            yield None


def prepare(engine: Engine, alerts: list[Notification]) -> None:
    """Empty tables, then N users and their PENDING notifications."""
    with engine.begin() as conn:
        for table in ("notifications", "alert_states", "subscriptions", "users"):
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed table names
    with SqlUnitOfWork(engine, lambda: NOW) as uow:
        for note in alerts:
            uow.users.add(User(note.user_id, Email(str(note.email)), "x", NOW))
        uow.notifications.add_new([NotificationRecord(n, DeliveryStatus.PENDING) for n in alerts])
        uow.commit()


def deliver_all(engine: Engine, alerts: list[Notification], grouped: bool) -> float:
    """Seconds to deliver every PENDING notification; all must end SENT."""
    prepare(engine, alerts)
    clock = ManualClock(NOW)
    handlers = notification_delivery(mailer=AcceptingMailer(), clock=clock)
    bus = MessageBus(lambda: SqlUnitOfWork(engine, clock.now), clock, [handlers])
    with ExitStack() as stack:
        if grouped:
            stack.enter_context(_grouped_outcomes())
        started = time.perf_counter()
        sent = bus.handle(RetryPendingNotifications())
        elapsed = time.perf_counter() - started
    assert sent == len(alerts), f"{sent} of {len(alerts)} sent"
    return elapsed


class _grouped_outcomes:  # noqa: N801 - a context manager used like a function
    """The previous way, for comparison: outcomes stored ten per transaction."""

    def __enter__(self) -> None:
        self._store = delivery._store
        pending: list[NotificationRecord] = []

        def store(updated: NotificationRecord, uow: SqlUnitOfWork) -> None:
            pending.append(updated)
            if len(pending) >= 10:
                with uow:
                    for record in pending:
                        uow.notifications.update(record)
                    uow.commit()
                pending.clear()

        delivery._store = store  # type: ignore[assignment]  # a stand-in of the same shape

    def __exit__(self, *exc: object) -> None:
        delivery._store = self._store


def engines(which: str, folder: Path) -> Iterator[tuple[str, Engine]]:
    if which in ("sqlite", "both"):
        engine = make_engine(f"sqlite:///{folder / 'ledger.db'}")
        upgrade(engine)
        yield "sqlite", engine
        engine.dispose()
    if which in ("mariadb", "both"):
        base = os.environ.get("STOCKALERT_TEST_DB_URL")
        if not base:
            raise SystemExit("STOCKALERT_TEST_DB_URL is not set: run scripts/dev-services start")
        admin = make_engine(base)
        name = f"{make_url(base).database}_bench_ledger"
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        admin.dispose()
        engine = make_engine(make_url(base).set(database=name).render_as_string(False))
        upgrade(engine)
        yield "mariadb", engine
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=2000)
    parser.add_argument("--db", choices=["sqlite", "mariadb", "both"], default="both")
    args = parser.parse_args()
    alerts = notifications(args.notifications)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for name, engine in engines(args.db, Path(folder)):
            each = deliver_all(engine, alerts, grouped=False)
            grouped = deliver_all(engine, alerts, grouped=True)
            print(
                f"{name}: {len(alerts)} outcomes, one commit each {len(alerts) / each:.0f}/s, "
                f"ten per commit {len(alerts) / grouped:.0f}/s"
            )
            results.append(
                f"{name}_each_per_s={len(alerts) / each:.0f} "
                f"{name}_grouped_per_s={len(alerts) / grouped:.0f}"
            )
    print(f"ledger notifications={len(alerts)} " + " ".join(results))


if __name__ == "__main__":
    main()

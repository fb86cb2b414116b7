"""Retention through the bus on every backend, and `stockalert serve cleaner` as a process.

CleanUp drops quotes older than the retention period except the newest N of each followed
ticker, every quote of tickers nobody follows, and request-ledger replies older than their
TTL (a replayed request id then executes again).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from stockalert.adapters.memory.fakes import ManualClock
from stockalert.adapters.sql import tables
from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.migrate import upgrade
from stockalert.adapters.system import SystemClock
from stockalert.containers import in_memory_config
from stockalert.domain.commands import (
    CleanUp,
    RecordQuotes,
    RegisterUser,
    RemoveSubscription,
    SetSubscription,
)
from stockalert.domain.errors import NotFound
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.queries import GetAverageValue
from stockalert.domain.views import AverageValue, CleanupReport, Done, UserRegistered
from tests.integration.conftest import sql_engine_for
from tests.wiring import build_container, sql_config

DAY = 24 * 3600.0
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=2)  # when the clean-up runs
RETENTION_S = 7 * DAY
KEEP = 20
REQUEST_TTL_S = 1 * DAY
PASSWORD = "password123"


class System:
    """The bus over one backend, and a look at the quotes it stores."""

    def __init__(self, config: dict[str, Any], engine: Engine | None) -> None:
        self.clock = ManualClock(T0)
        self.container = build_container(config=config, clock=self.clock)
        self.engine = engine
        self.bus: MessageBus = self.container.bus()

    def quote_times(self, ticker: str) -> list[datetime]:
        """quoted_at of the stored quotes of a ticker, oldest first."""
        if self.engine is None:
            return [q.quoted_at for q in self.container.core.store().quotes.get(Ticker(ticker), [])]
        c = tables.quotes.c
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(c.quoted_at).where(c.ticker == ticker).order_by(c.quoted_at)
                ).scalars()
            )


@pytest.fixture(params=["memory", "sqlite", "mariadb"])
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    engine = None
    config = in_memory_config()
    if request.param != "memory":
        engine = sql_engine_for(str(request.param), tmp_path, request)
        config = sql_config(engine.url.render_as_string(hide_password=False))
    system = System(config, engine)
    try:
        yield system
    finally:
        system.container.shutdown_resources()


def quotes(ticker: str, times: list[datetime], base: float = 100.0) -> tuple[Quote, ...]:
    """Quotes at the given times with distinct prices (so averages tell sets apart)."""
    return tuple(Quote(Ticker(ticker), base + i * 0.25, at) for i, at in enumerate(times))


def averages(bus: MessageBus, user_id: str, ticker: str) -> list[AverageValue]:
    answers = []
    for count in range(1, KEEP + 1):
        answer = bus.ask(GetAverageValue(user_id, count, ticker))
        assert isinstance(answer, AverageValue)
        answers.append(answer)
    return answers


def test_clean_up_keeps_recent_quotes_and_the_newest_n_and_expires_old_replies(
    system: System,
) -> None:
    """Retention keeps the last 7 days plus the newest 20, drops unfollowed tickers' quotes."""
    bus, clock = system.bus, system.clock
    # At T0: a user, subscriptions, and requests whose replies will be two days old.
    registered = bus.handle(RegisterUser("r-register", "gina@example.com", PASSWORD))
    assert isinstance(registered, UserRegistered)
    user = registered.user_id
    for ticker in ("AAPL", "MSFT", "NFLX", "GOOG", "XOM"):
        bus.handle(SetSubscription(f"r-set-{ticker}", user, ticker))
    assert bus.handle(RemoveSubscription("r-old", user, "XOM")) == Done()

    # Two days later: a fresh request, and the quotes.
    clock.advance(2 * DAY)
    assert clock.now() == NOW
    bus.handle(SetSubscription("r-set-IBM", user, "IBM"))
    assert bus.handle(RemoveSubscription("r-new", user, "IBM")) == Done()
    every_4h = [NOW - timedelta(hours=4 * k) for k in range(181)]  # 30 days, dense
    daily = [NOW - timedelta(days=k) for k in range(31)]  # 30 days, sparse
    old_few = [NOW - timedelta(days=20 + k) for k in range(5)]  # fewer than KEEP, all old
    recent = [NOW - timedelta(hours=k) for k in range(10)]
    bus.handle(
        RecordQuotes(
            quotes("AAPL", every_4h)
            + quotes("MSFT", daily, 400.0)
            + quotes("NFLX", old_few, 600.0)
            + quotes("GOOG", recent, 170.0)
        )
    )
    assert len(system.quote_times("AAPL")) == 181
    # GOOG loses its only follower: its quotes are of no use any more.
    bus.handle(RemoveSubscription("r-unwatch-GOOG", user, "GOOG"))
    before = {t: averages(bus, user, t) for t in ("AAPL", "MSFT", "NFLX")}

    report = bus.handle(CleanUp(RETENTION_S, KEEP, REQUEST_TTL_S))

    cutoff = NOW - timedelta(seconds=RETENTION_S)
    kept_aapl = sorted(at for at in every_4h if at >= cutoff)  # the boundary quote stays
    assert len(kept_aapl) == 43  # more than KEEP: the period decides
    assert system.quote_times("AAPL") == kept_aapl
    assert system.quote_times("MSFT") == sorted(daily)[-KEEP:]  # KEEP decides
    assert any(at < cutoff for at in system.quote_times("MSFT"))
    assert system.quote_times("NFLX") == sorted(old_few)  # fewer than KEEP: all stay
    assert system.quote_times("GOOG") == []
    after = {t: averages(bus, user, t) for t in ("AAPL", "MSFT", "NFLX")}
    assert after == before

    # Replies of T0 (register, five subscriptions, r-old) are expired; today's three remain.
    assert report == CleanupReport(quotes_removed=(181 - 43) + (31 - KEEP) + 10, replies_expired=7)
    # A replay of an expired request executes again: XOM is not watched any more.
    with pytest.raises(NotFound):
        bus.handle(RemoveSubscription("r-old", user, "XOM"))
    # A replay of a kept request gets its stored reply, although IBM is not watched either.
    assert bus.handle(RemoveSubscription("r-new", user, "IBM")) == Done()


def test_clean_up_twice_removes_nothing_more(system: System) -> None:
    """A second clean-up at the same time finds nothing left to remove."""
    bus = system.bus
    registered = bus.handle(RegisterUser("r-register", "hank@example.com", PASSWORD))
    assert isinstance(registered, UserRegistered)
    bus.handle(SetSubscription("r-set", registered.user_id, "AAPL"))
    system.clock.advance(40 * DAY)
    now = system.clock.now()
    bus.handle(RecordQuotes(quotes("AAPL", [now - timedelta(days=k) for k in range(30)])))

    first = bus.handle(CleanUp(RETENTION_S, KEEP, REQUEST_TTL_S))
    second = bus.handle(CleanUp(RETENTION_S, KEEP, REQUEST_TTL_S))

    assert first == CleanupReport(quotes_removed=10, replies_expired=2)
    assert second == CleanupReport(quotes_removed=0, replies_expired=0)
    assert len(system.quote_times("AAPL")) == KEEP


# ----- `stockalert serve cleaner` ----------------------------------------------------------


def sqlite_bus(url: str) -> tuple[Any, MessageBus]:
    container = build_container(config=sql_config(url), clock=SystemClock())
    return container, container.bus()


def count_quotes(engine: Engine, ticker: str) -> int:
    c = tables.quotes.c
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(tables.quotes).where(c.ticker == ticker)
            ).scalar_one()
        )


def wait_for(condition: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s:\n{log.read_text()}"
        time.sleep(0.1)


def test_serve_cleaner_removes_unfollowed_quotes_periodically_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    """The cleaner process drops unfollowed tickers' quotes every interval; SIGTERM exits 0."""
    url = f"sqlite:///{tmp_path / 'stockalert.db'}"
    engine = make_engine(url, read_only=True)
    migrator = make_engine(url)
    upgrade(migrator)
    migrator.dispose()
    container, bus = sqlite_bus(url)
    old = datetime(2025, 6, 2, 15, 0, tzinfo=UTC)
    try:
        registered = bus.handle(RegisterUser("r-register", "ivy@example.com", PASSWORD))
        assert isinstance(registered, UserRegistered)
        bus.handle(SetSubscription("r-set", registered.user_id, "AAPL"))
        bus.handle(
            RecordQuotes(
                quotes("ZZZZ", [old + timedelta(minutes=k) for k in range(30)])
                + quotes("AAPL", [old + timedelta(minutes=k) for k in range(5)])
            )
        )
        assert count_quotes(engine, "ZZZZ") == 30

        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKALERT_")} | {
            "STOCKALERT_DB_URL": url,
            "STOCKALERT_CLEAN_INTERVAL": "0.5",
        }
        log = tmp_path / "cleaner.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "stockalert.entrypoints.cli", "serve", "cleaner"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            wait_for(lambda: count_quotes(engine, "ZZZZ") == 0, 10, "ZZZZ not cleaned", log)
            # Periodic, not once: quotes written now are gone again a cycle later.
            bus.handle(RecordQuotes(quotes("ZZZZ", [old + timedelta(hours=1)])))
            wait_for(lambda: count_quotes(engine, "ZZZZ") == 0, 10, "not cleaned again", log)
            assert process.poll() is None, log.read_text()

            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert count_quotes(engine, "AAPL") == 5  # followed, fewer than the newest 20
        text = log.read_text()
        assert "event=started role=cleaner" in text
        assert "event=stopped role=cleaner" in text
        assert "Traceback" not in text
    finally:
        container.shutdown_resources()
        engine.dispose()

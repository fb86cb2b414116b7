"""The query side's read model, one contract for memory, SQLite and MariaDB (the SQL ones
through a read-only engine of their own, as the query-api reads: autocommit on MariaDB)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stockalert.adapters.memory.fakes import ManualClock
from stockalert.adapters.memory.storage import MemoryReadModel, MemoryStore, MemoryUnitOfWork
from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.read_model import SqlReadModel
from stockalert.adapters.sql.uow import SqlUnitOfWork
from stockalert.domain.model import (
    DeliveryStatus,
    Email,
    Notification,
    NotificationKind,
    NotificationRecord,
    Quote,
    Side,
    Subscription,
    Ticker,
    User,
)
from stockalert.domain.ports import ReadModel, UnitOfWork
from tests.integration.conftest import sql_engine_for

T0 = datetime(2026, 1, 5, 14, 30, 0, 123456, tzinfo=UTC)
AAPL, MSFT, NVDA = Ticker("AAPL"), Ticker("MSFT"), Ticker("NVDA")


@pytest.fixture
def storage(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, clock: ManualClock
) -> Iterator[tuple[Callable[[], UnitOfWork], ReadModel]]:
    """Units of work that write, and the read model over what they committed."""
    if backend == "memory":
        store = MemoryStore()
        yield (lambda: MemoryUnitOfWork(store)), MemoryReadModel(store)
        return
    engine = sql_engine_for(backend, tmp_path, request)
    reader = make_engine(engine.url.render_as_string(hide_password=False), read_only=True)
    yield (lambda: SqlUnitOfWork(engine, clock.now)), SqlReadModel(reader)
    reader.dispose()


def seed(new_uow: Callable[[], UnitOfWork]) -> None:
    """u1 watches AAPL and MSFT (quotes of AAPL only, three); u2 watches nothing."""
    with new_uow() as uow:
        for n in (1, 2):
            uow.users.add(User(f"u{n}", Email(f"user{n}@example.com"), "hash", T0))
        for sid, ticker in (("s1", AAPL), ("s2", MSFT)):
            uow.subscriptions.save(
                Subscription(sid, "u1", Email("user1@example.com"), ticker, high_value=200.0)
            )
        for minute, price in ((2, 191.5), (0, 189.0), (1, 190.25)):
            at = T0 + timedelta(minutes=minute)
            uow.quotes.add(Quote(AAPL, price, at), at)
        uow.quotes.add(Quote(NVDA, 900.0, T0 + timedelta(minutes=5)), T0)  # watched by nobody
        uow.commit()


def test_latest_of_watched_gives_each_watched_ticker_its_newest_quote_in_one_read(
    storage: tuple[Callable[[], UnitOfWork], ReadModel],
) -> None:
    new_uow, read = storage
    seed(new_uow)
    assert read.latest_of_watched("u1") == {
        AAPL: Quote(AAPL, 191.5, T0 + timedelta(minutes=2)),
        MSFT: None,  # watched, never quoted
    }
    assert read.latest_of_watched("u2") == {}  # a user who watches nothing
    assert read.latest_of_watched("nobody") is None  # no such user
    # Only the ticker asked about (the query-api's GetLatestValue with a ticker).
    assert read.latest_of_watched("u1", AAPL) == {
        AAPL: Quote(AAPL, 191.5, T0 + timedelta(minutes=2))
    }
    assert read.latest_of_watched("u1", MSFT) == {MSFT: None}
    assert read.latest_of_watched("u1", NVDA) == {}  # quoted, but not watched by u1
    assert read.latest_of_watched("nobody", AAPL) is None


def test_watched_tickers_and_subscriptions_tell_no_user_from_no_subscriptions(
    storage: tuple[Callable[[], UnitOfWork], ReadModel],
) -> None:
    new_uow, read = storage
    seed(new_uow)
    assert sorted(t.value for t in read.watched_tickers("u1") or []) == ["AAPL", "MSFT"]
    assert read.watched_tickers("u2") == []
    assert read.watched_tickers("nobody") is None
    views = read.subscriptions_of("u1")
    assert views is not None
    assert sorted(v.ticker for v in views) == ["AAPL", "MSFT"]
    assert read.subscriptions_of("u2") == []
    assert read.subscriptions_of("nobody") is None


def test_a_commit_is_seen_by_the_next_read(
    storage: tuple[Callable[[], UnitOfWork], ReadModel],
) -> None:
    """No read sees an old snapshot: a new quote and a deleted user show at once."""
    new_uow, read = storage
    seed(new_uow)
    assert read.latest_of_watched("u1") is not None
    later = T0 + timedelta(minutes=9)
    with new_uow() as uow:
        uow.quotes.add(Quote(MSFT, 401.0, later), later)
        uow.commit()
    assert (read.latest_of_watched("u1") or {})[MSFT] == Quote(MSFT, 401.0, later)
    with new_uow() as uow:
        uow.users.delete("u2")
        uow.commit()
    assert read.latest_of_watched("u2") is None
    assert not read.user_exists("u2")


def test_pending_notifications_counts_every_users_pending_rows(
    storage: tuple[Callable[[], UnitOfWork], ReadModel],
) -> None:
    new_uow, read = storage
    seed(new_uow)
    assert read.pending_notifications() == 0

    def record(n: int, status: DeliveryStatus) -> NotificationRecord:
        note = Notification(
            notification_id=f"s1:HIGH:{n}",
            subscription_id="s1",
            user_id="u1",
            email=Email("user1@example.com"),
            ticker=AAPL,
            side=Side.HIGH,
            kind=NotificationKind.CROSSING,
            price=201.0,
            threshold=200.0,
            quoted_at=T0 + timedelta(minutes=n),
            episode=n,
        )
        return NotificationRecord(note, status)

    with new_uow() as uow:
        uow.notifications.add(record(1, DeliveryStatus.SENT))
        uow.notifications.add(record(2, DeliveryStatus.PENDING))
        uow.notifications.add(record(3, DeliveryStatus.PENDING))
        uow.notifications.add(record(4, DeliveryStatus.FAILED))
        uow.commit()
    assert read.pending_notifications() == 2


def test_ending_sessions_raises_the_version_the_next_authentication_reads(
    storage: tuple[Callable[[], UnitOfWork], ReadModel],
) -> None:
    """Users start at session version 0; end_sessions raises one user's by one, committed
    and seen by the next read; no user: None."""
    new_uow, read = storage
    seed(new_uow)
    assert (read.session_version("u1"), read.session_version("u2")) == (0, 0)
    for _ in range(2):
        with new_uow() as uow:
            uow.users.end_sessions("u1")
            uow.commit()
    assert (read.session_version("u1"), read.session_version("u2")) == (2, 0)
    with new_uow() as uow:
        user = uow.users.get("u1")
    assert user is not None
    assert user.session_version == 2
    assert read.session_version("nobody") is None

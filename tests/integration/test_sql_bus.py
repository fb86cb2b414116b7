"""The whole message bus over SQL: the same behaviour as in memory, in real tables."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table, func, select

from stockalert.adapters.memory.fakes import ManualClock
from stockalert.adapters.sql import tables
from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.migrate import upgrade
from stockalert.domain.commands import (
    DeleteUser,
    RecordQuotes,
    RegisterUser,
    SetSubscription,
    SubscriptionSpec,
)
from stockalert.domain.errors import NotFound
from stockalert.domain.model import DeliveryStatus, Quote, Ticker
from stockalert.domain.queries import ListNotifications, ListSubscriptions
from stockalert.domain.views import UserRegistered
from tests.integration.conftest import sql_engine_for
from tests.wiring import build_container, sql_config


def container_for(url: str, read_url: str | None = None) -> Any:
    return build_container(config=sql_config(url, read_url))


@pytest.fixture(params=["sqlite", "mariadb"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    return sql_engine_for(str(request.param), tmp_path, request)


@pytest.fixture
def container(engine: Engine) -> Iterator[Any]:
    container = container_for(engine.url.render_as_string(hide_password=False))
    yield container
    container.shutdown_resources()


def count(engine: Engine, table: Table, **where: str) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def test_alert_flow_and_account_deletion_leave_the_right_rows(
    container: Any, engine: Engine, clock: ManualClock
) -> None:
    """Register, cross a threshold (one sent notification), then delete: no row of the user."""
    bus, clock = container.bus(), container.core.clock()
    reply = bus.handle(
        RegisterUser("r1", "ann@example.com", "password123", (SubscriptionSpec("AAPL", 190.0),))
    )
    assert isinstance(reply, UserRegistered)
    other = bus.handle(RegisterUser("r2", "bob@example.com", "password123"))
    assert isinstance(other, UserRegistered)
    bus.handle(SetSubscription("r3", other.user_id, "AAPL", low_value=150.0))
    for minute, price in enumerate((189.0, 190.5, 191.0)):
        quote = Quote(Ticker("AAPL"), price, clock.now() + timedelta(minutes=minute))
        bus.handle(RecordQuotes((quote,)))
    (record,) = bus.ask(ListNotifications(reply.user_id))
    assert record.status is DeliveryStatus.SENT
    assert len(container.delivery.mailer().sent) == 1

    bus.handle(DeleteUser("r4", reply.user_id, clock.now()))

    assert count(engine, tables.users, user_id=reply.user_id) == 0
    assert count(engine, tables.subscriptions, user_id=reply.user_id) == 0
    assert count(engine, tables.notifications, user_id=reply.user_id) == 0
    assert count(engine, tables.request_ledger, subject="ann@example.com") == 0
    assert count(engine, tables.alert_states) == 2  # Bob's two sides remain
    assert count(engine, tables.users) == 1
    assert count(engine, tables.quotes) == 3  # prices are nobody's personal data
    with pytest.raises(NotFound):
        bus.ask(ListSubscriptions(reply.user_id))


def test_queries_read_through_the_read_database(tmp_path: Path) -> None:
    """STOCKALERT_READ_DB_URL is where queries go: a lagging replica shows its own state."""
    primary, replica = (
        f"sqlite:///{tmp_path / 'primary.db'}",
        f"sqlite:///{tmp_path / 'replica.db'}",
    )
    for url in (primary, replica):
        migrated = make_engine(url)
        upgrade(migrated)
        migrated.dispose()
    container = container_for(primary, replica)
    try:
        bus = container.bus()
        reply = bus.handle(
            RegisterUser("r1", "ann@example.com", "password123", (SubscriptionSpec("AAPL"),))
        )
        assert isinstance(reply, UserRegistered)
        with pytest.raises(NotFound):  # the replica has not seen the new user yet
            bus.ask(ListSubscriptions(reply.user_id))
    finally:
        container.shutdown_resources()

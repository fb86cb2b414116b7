"""Alembic migrations on real databases: schema equals the models, round trips, `db upgrade`.

The MariaDB cases use the shared test database: they start from an empty database (downgrade
to base, drop the version table) and leave it migrated to head and empty for the other tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from stockalert.adapters.memory.fakes import ManualClock
from stockalert.adapters.sql import tables
from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.migrate import current_revision, downgrade, head_revision, upgrade
from stockalert.domain.commands import RecordQuotes, RegisterUser, SetSubscription
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.queries import GetAverageValue, GetLatestValue, ListSubscriptions
from stockalert.domain.views import AverageValue, LatestValue, UserRegistered
from stockalert.entrypoints import cli
from tests.integration.conftest import empty_tables
from tests.wiring import build_container, sql_config

MODEL_TABLES = sorted(tables.metadata.tables)
UNREACHABLE_URL = "mysql+pymysql://u:p@127.0.0.1:1/db"


def drop_everything(engine: Engine) -> None:
    """Back to an empty database: downgrade to base, then drop the version table."""
    downgrade(engine, "base")
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


@pytest.fixture(params=["sqlite", "mariadb"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database with no tables at all."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'migrations.db'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    engine = request.getfixturevalue("mariadb_engine")
    drop_everything(engine)
    try:
        yield engine
    finally:
        upgrade(engine)  # the session-wide fixture promises a migrated database
        empty_tables(engine)


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


def schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, tables.metadata))


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_upgrade_from_an_empty_database_creates_exactly_the_model_tables(
    empty_db: Engine,
) -> None:
    """Upgrading an empty database to head creates the models' tables and alembic_version."""
    assert table_names(empty_db) == []
    assert current_revision(empty_db) is None

    upgrade(empty_db)

    assert table_names(empty_db) == sorted([*MODEL_TABLES, "alembic_version"])
    assert current_revision(empty_db) == head_revision(empty_db)
    assert head_revision(empty_db) is not None


def test_the_migrated_schema_matches_the_models_exactly(empty_db: Engine) -> None:
    """Autogenerate finds no difference between the migrated schema and `tables.metadata`."""
    upgrade(empty_db)

    assert schema_differences(empty_db) == []


def test_downgrade_to_base_leaves_only_the_version_table(empty_db: Engine) -> None:
    """Downgrading to base drops every model table; only alembic_version (empty) remains."""
    upgrade(empty_db)

    downgrade(empty_db, "base")

    assert table_names(empty_db) == ["alembic_version"]
    assert current_revision(empty_db) is None


def test_a_downgrade_upgrade_round_trip_gives_a_working_database(empty_db: Engine) -> None:
    """After upgrade, downgrade and upgrade again the schema matches and data round-trips."""
    upgrade(empty_db)
    downgrade(empty_db, "base")
    upgrade(empty_db)
    assert schema_differences(empty_db) == []
    assert current_revision(empty_db) == head_revision(empty_db)

    url = url_of(empty_db)
    clock = ManualClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    container = build_container(config=sql_config(url), clock=clock)
    try:
        bus = container.bus()
        registered = bus.handle(RegisterUser("r1", "dora@example.com", "password123"))
        assert isinstance(registered, UserRegistered)
        user_id = registered.user_id
        bus.handle(SetSubscription("r2", user_id, "AAPL", high_value=250.0, low_value=150.0))
        at = clock.now() - timedelta(minutes=3)
        prices = [200.25, 201.5, 202.75]
        bus.handle(
            RecordQuotes(
                tuple(
                    Quote(Ticker("AAPL"), price, at + timedelta(minutes=i))
                    for i, price in enumerate(prices)
                )
            )
        )

        views = bus.ask(ListSubscriptions(user_id))
        latest = bus.ask(GetLatestValue(user_id, "AAPL"))
        average = bus.ask(GetAverageValue(user_id, 3, "AAPL"))
    finally:
        container.shutdown_resources()

    assert isinstance(views, list)
    assert [(v.ticker, v.high_value, v.low_value) for v in views] == [("AAPL", 250.0, 150.0)]
    assert latest == LatestValue("AAPL", 202.75, at + timedelta(minutes=2))
    assert average == AverageValue("AAPL", sum(prices) / 3, 3)


def test_db_upgrade_prints_the_head_revision_and_is_idempotent(
    empty_db: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stockalert db upgrade` migrates to head, says so, and does the same when run again."""
    monkeypatch.setenv("STOCKALERT_DB_URL", url_of(empty_db))
    monkeypatch.delenv("STOCKALERT_READ_DB_URL", raising=False)
    head = head_revision(empty_db)

    for _ in range(2):
        assert cli.main(["db", "upgrade"]) == cli.EXIT_OK
        out, err = capsys.readouterr()
        assert out.strip() == f"database at revision {head}"
        assert err == ""
        assert current_revision(empty_db) == head
        assert table_names(empty_db) == sorted([*MODEL_TABLES, "alembic_version"])


def test_db_upgrade_of_an_unreachable_database_exits_69_quickly_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stockalert db upgrade` on a closed port fails at once with exit 69 and says why."""
    monkeypatch.setenv("STOCKALERT_DB_URL", UNREACHABLE_URL)
    monkeypatch.delenv("STOCKALERT_READ_DB_URL", raising=False)

    started = time.monotonic()
    code = cli.main(["db", "upgrade"])
    elapsed = time.monotonic() - started

    out, err = capsys.readouterr()
    assert code == cli.EXIT_UNAVAILABLE == 69
    assert elapsed < 5.0
    assert out == ""
    assert "stockalert db upgrade: database unavailable" in err
    assert "Can't connect" in err or "Connection refused" in err


def test_revision_0004_marks_every_stored_quote_as_applied(empty_db: Engine) -> None:
    """A database of an older build (at 0003) had every stored quote applied: after the
    upgrade each ticker's high-water mark is its newest quote, so the first start of the new
    build applies nothing again (and a ticker without quotes has no mark)."""
    upgrade(empty_db, "0003")
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    with empty_db.begin() as conn:
        for ticker, minutes in (("AAPL", (0, 1, 2)), ("MSFT", (5,))):
            for minute in minutes:
                conn.execute(
                    tables.quotes.insert().values(
                        ticker=ticker,
                        price=100.0 + minute,
                        quoted_at=at + timedelta(minutes=minute),
                        collected_at=at + timedelta(minutes=minute),
                    )
                )

    upgrade(empty_db)

    with empty_db.connect() as conn:
        rows = conn.execute(tables.alert_progress.select()).all()
    marks = {row.ticker: row.applied_through for row in rows}
    assert marks == {"AAPL": at + timedelta(minutes=2), "MSFT": at + timedelta(minutes=5)}

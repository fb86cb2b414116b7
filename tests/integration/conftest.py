"""Fixtures for tests against real servers.

The MariaDB URL comes from STOCKALERT_TEST_DB_URL (written by `scripts/dev-services start`
into .state/services.env; under `pytest --compose`, the compose stack's: see endpoints.py).
Without it the MariaDB cases are skipped locally, but when CI is set a missing server is a
failure: CI must never pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from stockalert.adapters.kafka.topics import Topics
from stockalert.adapters.memory.fakes import ManualClock
from stockalert.adapters.memory.storage import MemoryStore, MemoryUnitOfWork
from stockalert.adapters.sql import tables
from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.migrate import upgrade
from stockalert.adapters.sql.uow import SqlUnitOfWork
from stockalert.domain.ports import UnitOfWork
from tests.integration.kafka_cluster import (
    cluster_lock,
    fresh_topics,
    kafka_bootstrap,
    service_setting,
)

UowFactory = Callable[[], UnitOfWork]
BACKENDS = ["memory", "sqlite", "mariadb"]


@pytest.fixture(scope="session", autouse=True)
def _endpoints(service_endpoints: None) -> None:
    """Every test here finds its servers through tests/integration/endpoints.py."""


def mariadb_url() -> str:
    """The test database URL, or skip (fail under CI) when no server is configured."""
    return service_setting("STOCKALERT_TEST_DB_URL")


def empty_tables(engine: Engine) -> None:
    """Delete every row, children first (faster than re-creating the schema per test)."""
    with engine.begin() as conn:
        for table in reversed(tables.metadata.sorted_tables):
            conn.execute(table.delete())


def worker_database_url(base_url: str, purpose: str = "", *, fresh: bool = False) -> str:
    """A database of this pytest-xdist worker's own (created if missing; dropped first when
    `fresh`), so that parallel workers never empty or migrate each other's tables; `purpose`
    gives a test its own one besides the worker's shared one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    base = make_url(base_url)
    name = "_".join(part for part in (base.database, purpose, worker) if part)
    admin = make_engine(base_url)
    try:
        with admin.begin() as conn:
            if fresh:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"))
    finally:
        admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def mariadb_engine() -> Iterator[Engine]:
    """A migrated MariaDB test database of this worker (session-wide)."""
    try:
        url = worker_database_url(mariadb_url())
    except Exception as err:  # noqa: BLE001 - any failure to connect means the same here
        if os.environ.get("CI"):
            pytest.fail(f"MariaDB at STOCKALERT_TEST_DB_URL is not reachable: {err}")
        pytest.skip(f"MariaDB not reachable: {err}")
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def sql_engine_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Engine:
    """A migrated, empty database of the backend."""
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
        upgrade(engine)
        request.addfinalizer(engine.dispose)
        return engine
    engine = cast("Engine", request.getfixturevalue("mariadb_engine"))
    empty_tables(engine)
    return engine


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each repository contract test runs once per storage backend."""
    return str(request.param)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sleeps() -> list[float]:
    """A fake `sleep` for backoffs appends the delay here instead of waiting."""
    return []


@pytest.fixture
def uow_factory(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, clock: ManualClock
) -> UowFactory:
    """New units of work over one fresh database of the backend."""
    if backend == "memory":
        store = MemoryStore()
        return lambda: MemoryUnitOfWork(store)
    engine = sql_engine_for(backend, tmp_path, request)
    return lambda: SqlUnitOfWork(engine, clock.now)


@pytest.fixture
def kafka() -> Iterator[str]:
    """The bootstrap servers of the whole 3-broker cluster (kept whole during the test)."""
    bootstrap = kafka_bootstrap()
    with cluster_lock(exclusive=False):
        yield bootstrap


@pytest.fixture
def topics(kafka: str) -> Iterator[Topics]:
    """Topics of this test's own (a unique prefix), deleted afterwards."""
    with fresh_topics(kafka) as created:
        yield created

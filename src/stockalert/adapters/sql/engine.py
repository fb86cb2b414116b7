"""Engines for MySQL/MariaDB (PyMySQL) and SQLite, configured for this project's needs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

from stockalert.adapters.files import private_file


def is_sqlite(url: str) -> bool:
    """True for sqlite:// URLs."""
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, read_only: bool = False, echo: bool = False) -> Engine:
    """An engine; no connection is made until first use.

    MySQL/MariaDB: utf8mb4, READ COMMITTED, short connect timeout (an unreachable database
    must turn into UNAVAILABLE quickly, not hang a request); a pooled connection is pinged
    only when it has been idle (`_ping_after_idle`). The read-only engine runs in autocommit:
    each read is one statement, and neither BEGIN nor ROLLBACK costs a round trip.
    SQLite: WAL, foreign keys on, and write transactions that start with BEGIN IMMEDIATE so
    that concurrent writers queue (busy timeout) instead of failing half-way.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not read_only:
            private_file(Path(parsed.database))  # before SQLite creates it 0644
        engine = create_engine(parsed, echo=echo, connect_args={"timeout": 15})
        _configure_sqlite(engine, read_only=read_only)
        return engine
    if backend in ("mysql", "mariadb"):
        if parsed.get_driver_name() in ("", "mysqldb"):
            parsed = parsed.set(drivername=f"{backend}+pymysql")
        query = dict(parsed.query)
        query.setdefault("charset", "utf8mb4")
        engine = create_engine(
            parsed.set(query=query),
            echo=echo,
            isolation_level="AUTOCOMMIT" if read_only else "READ COMMITTED",
            skip_autocommit_rollback=read_only,
            pool_recycle=3600,
            pool_size=16,
            max_overflow=16,
            # No ROLLBACK when a connection goes back to the pool: SQLAlchemy's Connection
            # has ended its transaction already (committed, or rolled back on close), and the
            # pool's own ROLLBACK was one more round trip per unit of work.
            pool_reset_on_return=None,
            connect_args={"connect_timeout": 5, "read_timeout": 30, "write_timeout": 30},
        )
        _ping_after_idle(engine)
        return engine
    raise ValueError(f"unsupported database {backend!r} (use mysql+pymysql:// or sqlite://)")


IDLE_PING_S = 10.0


def _ping_after_idle(engine: Engine) -> None:
    """pool_pre_ping's check, but only for a connection idle for IDLE_PING_S or more: a
    busy server answers one round trip per request instead of two. A dead connection found
    here is replaced (the pool retries the checkout); one that died within the idle window
    fails its statement, is invalidated, and the caller gets UNAVAILABLE once."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_S:
            return
        try:
            dbapi_connection.ping(reconnect=False)
        except Exception as err:
            raise DisconnectionError(f"pooled connection is dead: {err}") from err


def _configure_sqlite(engine: Engine, *, read_only: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

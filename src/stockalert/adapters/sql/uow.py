"""The SQL unit of work: one connection, one transaction, savepoints, events after commit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import datetime
from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine, RootTransaction
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from stockalert.adapters.outbox import OutboxEncoder, OutboxMessage
from stockalert.adapters.sql.outbox import write_messages
from stockalert.adapters.sql.repositories import (
    SqlAlertProgressRepository,
    SqlAlertStateRepository,
    SqlLoginFailureRepository,
    SqlNotificationLedger,
    SqlQuoteRepository,
    SqlRequestLedger,
    SqlSubscriptionRepository,
    SqlTickerStatusRepository,
    SqlUserRepository,
)
from stockalert.domain.errors import Unavailable
from stockalert.domain.events import Event
from stockalert.faults import crash_point


def is_outage(error: BaseException) -> bool:
    """A database error that a retry may cure: connection lost, server down, lock timeout."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


class SqlUnitOfWork:
    """UnitOfWork port over a SQLAlchemy engine; database outages surface as Unavailable."""

    def __init__(
        self, engine: Engine, now: Callable[[], datetime], outbox: OutboxEncoder | None = None
    ) -> None:
        self._engine = engine
        self._now = now
        self._outbox = outbox
        self._connection: Connection | None = None
        self._transaction: RootTransaction | None = None
        self._pending: list[Event] = []
        self._committed: list[Event] = []
        self.users = SqlUserRepository(self._conn)
        self.subscriptions = SqlSubscriptionRepository(self._conn)
        self.alert_states = SqlAlertStateRepository(self._conn)
        self.alert_progress = SqlAlertProgressRepository(self._conn)
        self.quotes = SqlQuoteRepository(self._conn)
        self.tickers = SqlTickerStatusRepository(self._conn)
        self.notifications = SqlNotificationLedger(self._conn)
        self.requests = SqlRequestLedger(self._conn, now)
        self.login_failures = SqlLoginFailureRepository(self._conn)

    def _conn(self) -> Connection:
        """The connection, in a transaction: begun at the first statement after entering or
        committing, so that a unit of work that commits and ends takes no further lock (on
        SQLite a write transaction begins IMMEDIATE) and costs no further round trip."""
        if self._connection is None:
            raise RuntimeError("use the unit of work inside a `with` block")
        if self._transaction is None or not self._transaction.is_active:
            self._transaction = self._connection.begin()
        return self._connection

    def __enter__(self) -> Self:
        try:
            self._connection = self._engine.connect()
        except DBAPIError as err:
            self._close()
            raise Unavailable("database unavailable; retry later") from err
        self._pending = []
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            with suppress(DBAPIError):  # the connection is gone; the server rolls back
                self.rollback()
        finally:
            self._close()
        if exc is not None and is_outage(exc):
            raise Unavailable("database unavailable; retry later") from exc

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._transaction = None

    def commit(self) -> None:
        if self._connection is None:
            raise RuntimeError("use the unit of work inside a `with` block")
        messages = self._outbox_messages()
        if messages:
            # The transactional outbox: the messages commit with the change, or not at all.
            write_messages(self._conn(), messages, self._now())
        if self._transaction is not None and self._transaction.is_active:
            crash_point("db.commit")
            try:
                self._transaction.commit()
            except DBAPIError as err:
                if is_outage(err):
                    raise Unavailable("database unavailable; retry later") from err
                raise
        self._transaction = None  # the next statement begins the next transaction
        self._committed.extend(self._pending)
        self._pending = []

    def _outbox_messages(self) -> list[OutboxMessage]:
        if self._outbox is None:
            return []
        return [m for m in map(self._outbox, self._pending) if m is not None]

    def rollback(self) -> None:
        if self._transaction is not None and self._transaction.is_active:
            self._transaction.rollback()
        self._pending = []

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        nested = self._conn().begin_nested()
        mark = len(self._pending)
        try:
            yield
        except BaseException:
            if nested.is_active:
                # After a deadlock the server has dropped the savepoint: keep the real cause.
                with suppress(DBAPIError):
                    nested.rollback()
            del self._pending[mark:]
            raise
        nested.commit()

    def savepoint(self) -> AbstractContextManager[None]:
        return self._savepoint()

    def record(self, event: Event) -> None:
        if self._connection is None:
            raise RuntimeError("use the unit of work inside a `with` block")
        self._pending.append(event)

    def collect_events(self) -> Iterator[Event]:
        while self._committed:
            yield self._committed.pop(0)

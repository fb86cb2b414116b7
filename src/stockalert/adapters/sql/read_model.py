"""The query side over its own (possibly replica) engine: plain reads, no unit of work."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, Select, bindparam, exists, func, select
from sqlalchemy.exc import DBAPIError

from stockalert.adapters.sql import tables as t
from stockalert.adapters.sql.repositories import (
    record_from_row,
    state_from_row,
    subscription_from_row,
)
from stockalert.domain.errors import Unavailable
from stockalert.domain.model import (
    ARMED,
    DeliveryStatus,
    NotificationRecord,
    Quote,
    Side,
    Ticker,
    TickerStatus,
    visible_ticker_status,
)
from stockalert.domain.views import SubscriptionView

F = TypeVar("F", bound=Callable[..., Any])


def _reads(method: F) -> F:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except DBAPIError as err:
            raise Unavailable("database unavailable; retry later") from err

    return cast("F", wrapper)


_users, _subs, _quotes = t.users.c, t.subscriptions.c, t.quotes.c
_newest = t.quotes.alias("newest")
# Asked on every authenticated call (built once: a prebuilt statement keeps its cache key).
_SESSION_VERSION = select(_users.session_version).where(_users.user_id == bindparam("b_user_id"))


def _watched_latest(one_ticker: bool) -> Select[Any]:
    """The user (a row even when they watch nothing), each ticker they watch (or only the
    one named), and its newest quote: one statement, one index probe per ticker on quotes
    (ticker, quoted_at)."""
    watching = _subs.user_id == _users.user_id
    if one_ticker:
        watching &= _subs.ticker == bindparam("ticker")
    newest = (
        select(func.max(_newest.c.quoted_at))
        .where(_newest.c.ticker == _subs.ticker)
        .correlate(t.subscriptions)
        .scalar_subquery()
    )
    return (
        select(_subs.ticker, _quotes.price, _quotes.quoted_at)
        .select_from(
            t.users.outerjoin(t.subscriptions, watching).outerjoin(
                t.quotes, (_quotes.ticker == _subs.ticker) & (_quotes.quoted_at == newest)
            )
        )
        .where(_users.user_id == bindparam("user_id"))
    )


# Built once: a statement object keeps its cache key, so each call skips rebuilding it.
WATCHED_LATEST = _watched_latest(one_ticker=False)
WATCHED_LATEST_ONE = _watched_latest(one_ticker=True)
PENDING_COUNT = (
    select(func.count())
    .select_from(t.notifications)
    .where(t.notifications.c.status == DeliveryStatus.PENDING.value)
)
WATCHED = (
    select(_users.user_id, _subs.ticker)
    .select_from(t.users.outerjoin(t.subscriptions, _subs.user_id == _users.user_id))
    .where(_users.user_id == bindparam("user_id"))
)


class SqlReadModel:
    """ReadModel port; each read is a statement or a few on the read engine (autocommit on
    MySQL/MariaDB: no transaction round trips)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @_reads
    def watched_tickers(self, user_id: str) -> list[Ticker] | None:
        with self._engine.connect() as conn:
            rows = conn.execute(WATCHED, {"user_id": user_id}).all()
        if not rows:
            return None
        return [Ticker(row.ticker) for row in rows if row.ticker is not None]

    @_reads
    def latest_of_watched(
        self, user_id: str, ticker: Ticker | None = None
    ) -> dict[Ticker, Quote | None] | None:
        with self._engine.connect() as conn:
            if ticker is None:
                rows = conn.execute(WATCHED_LATEST, {"user_id": user_id}).all()
            else:
                rows = conn.execute(
                    WATCHED_LATEST_ONE, {"user_id": user_id, "ticker": ticker.value}
                ).all()
        if not rows:
            return None
        return {
            Ticker(row.ticker): (
                None
                if row.quoted_at is None
                else Quote(Ticker(row.ticker), row.price, row.quoted_at)
            )
            for row in rows
            if row.ticker is not None
        }

    @_reads
    def user_exists(self, user_id: str) -> bool:
        with self._engine.connect() as conn:
            return self._exists(conn, user_id)

    @_reads
    def session_version(self, user_id: str) -> int | None:
        with self._engine.connect() as conn:
            version = conn.execute(_SESSION_VERSION, {"b_user_id": user_id}).scalar()
        return None if version is None else int(version)

    @staticmethod
    def _exists(conn: Connection, user_id: str) -> bool:
        return conn.execute(select(exists().where(_users.user_id == user_id))).scalar() is True

    @_reads
    def subscriptions_of(self, user_id: str) -> list[SubscriptionView] | None:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(*t.subscriptions.c, t.users.c.email)
                .join(t.users, t.users.c.user_id == t.subscriptions.c.user_id)
                .where(t.subscriptions.c.user_id == user_id)
            ).all()
            if not rows:
                return [] if self._exists(conn, user_id) else None
            ids = [row.subscription_id for row in rows]
            states = {
                (row.subscription_id, Side(row.side)): state_from_row(row)
                for row in conn.execute(
                    select(t.alert_states).where(t.alert_states.c.subscription_id.in_(ids))
                )
            }
            tickers = [row.ticker for row in rows]
            quoted = {
                row.ticker
                for row in conn.execute(
                    select(t.quotes.c.ticker).where(t.quotes.c.ticker.in_(tickers)).distinct()
                )
            }
            marked = {
                row.ticker: TickerStatus(row.status)
                for row in conn.execute(
                    select(t.ticker_status).where(t.ticker_status.c.ticker.in_(tickers))
                )
            }
        views = []
        for row in rows:
            sub = subscription_from_row(row)
            views.append(
                SubscriptionView.of(
                    sub,
                    states.get((sub.subscription_id, Side.HIGH), ARMED),
                    states.get((sub.subscription_id, Side.LOW), ARMED),
                    visible_ticker_status(marked.get(row.ticker), row.ticker in quoted),
                )
            )
        return views

    @_reads
    def newest_prices(self, ticker: Ticker, count: int) -> Sequence[float]:
        with self._engine.connect() as conn:
            return list(
                conn.execute(
                    select(t.quotes.c.price)
                    .where(t.quotes.c.ticker == ticker.value)
                    .order_by(t.quotes.c.quoted_at.desc())
                    .limit(count)
                ).scalars()
            )

    @_reads
    def pending_notifications(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(PENDING_COUNT).scalar() or 0)

    @_reads
    def notifications_of(self, user_id: str, limit: int) -> list[NotificationRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(t.notifications)
                .where(t.notifications.c.user_id == user_id)
                .order_by(
                    t.notifications.c.quoted_at.desc(), t.notifications.c.notification_id.desc()
                )
                .limit(limit)
            )
            return [record_from_row(row) for row in rows]

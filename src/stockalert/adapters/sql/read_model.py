"""The query side over its own (possibly replica) engine: plain reads, no unit of work."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, exists, select
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


class SqlReadModel:
    """ReadModel port; every read is one short transaction on the read engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @_reads
    def user_exists(self, user_id: str) -> bool:
        with self._engine.connect() as conn:
            return (
                conn.execute(select(exists().where(t.users.c.user_id == user_id))).scalar() is True
            )

    @_reads
    def subscriptions_of(self, user_id: str) -> list[SubscriptionView]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(*t.subscriptions.c, t.users.c.email)
                .join(t.users, t.users.c.user_id == t.subscriptions.c.user_id)
                .where(t.subscriptions.c.user_id == user_id)
            ).all()
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
    def latest_quote(self, ticker: Ticker) -> Quote | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(t.quotes.c.price, t.quotes.c.quoted_at)
                .where(t.quotes.c.ticker == ticker.value)
                .order_by(t.quotes.c.quoted_at.desc())
                .limit(1)
            ).first()
        return None if row is None else Quote(ticker, row.price, row.quoted_at)

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

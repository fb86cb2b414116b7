"""Repositories over one SQLAlchemy connection (the unit of work's transaction)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.exc import IntegrityError

from stockalert.adapters.sql import tables as t
from stockalert.adapters.sql.codec import decode_result, encode_result
from stockalert.domain.commands import RequestKey
from stockalert.domain.errors import AlreadyExists, ErrorCode
from stockalert.domain.model import (
    ARMED,
    DeliveryStatus,
    Email,
    FailedLogins,
    Notification,
    NotificationKind,
    NotificationRecord,
    Quote,
    Side,
    SideState,
    SideStatus,
    Subscription,
    Ticker,
    TickerStatus,
    User,
)
from stockalert.domain.ports import StoredReply
from stockalert.domain.request_ledger import ConcurrentDuplicate

Conn = Callable[[], Connection]
IN_CHUNK = 500  # values in one IN (...) list at most


def _chunks(values: Collection[str]) -> Iterator[list[str]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), IN_CHUNK):
        yield ordered[start : start + IN_CHUNK]


def _upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert the rows, replacing the non-key columns of those whose key exists: one
    multi-row statement on MariaDB/MySQL (ON DUPLICATE KEY UPDATE) and SQLite (ON CONFLICT)."""
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    others = [name for name in rows[0] if name not in keys]
    if conn.dialect.name == "sqlite":
        lite = sqlite.insert(table)
        conn.execute(
            lite.on_conflict_do_update(
                index_elements=keys, set_={name: lite.excluded[name] for name in others}
            ),
            list(rows),
        )
    else:
        my = mysql.insert(table)
        conn.execute(
            my.on_duplicate_key_update({name: my.inserted[name] for name in others}), list(rows)
        )


def _state_row(subscription_id: str, side: Side, state: SideState) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "side": side.value,
        "status": state.status.value,
        "episode": state.episode,
        "fired_at": state.fired_at,
        "reminders": state.reminders,
        "next_reminder_at": state.next_reminder_at,
    }


def _pair(high: SideState, low: SideState) -> tuple[tuple[Side, SideState], ...]:
    return ((Side.HIGH, high), (Side.LOW, low))


class _Repo:
    def __init__(self, connection: Conn) -> None:
        self._conn = connection


def subscription_from_row(row: Any) -> Subscription:
    """A subscriptions row joined with the user's e-mail."""
    return Subscription(
        subscription_id=row.subscription_id,
        user_id=row.user_id,
        email=Email(row.email),
        ticker=Ticker(row.ticker),
        high_value=row.high_value,
        low_value=row.low_value,
        rearm_percent=row.rearm_percent,
        cooldown_s=row.cooldown_s,
        remind_every_s=row.remind_every_s,
    )


def state_from_row(row: Any) -> SideState:
    """An alert_states row."""
    return SideState(
        status=SideStatus(row.status),
        episode=row.episode,
        fired_at=row.fired_at,
        reminders=row.reminders,
        next_reminder_at=row.next_reminder_at,
    )


def record_from_row(row: Any) -> NotificationRecord:
    """A notifications row."""
    return NotificationRecord(
        notification=Notification(
            notification_id=row.notification_id,
            subscription_id=row.subscription_id,
            user_id=row.user_id,
            email=Email(row.email),
            ticker=Ticker(row.ticker),
            side=Side(row.side),
            kind=NotificationKind(row.kind),
            price=row.price,
            threshold=row.threshold,
            quoted_at=row.quoted_at,
            episode=row.episode,
            correlation_id=row.correlation_id,
        ),
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
        next_attempt_at=row.next_attempt_at,
    )


_SUBSCRIPTION_COLUMNS = (*t.subscriptions.c, t.users.c.email)

# The statements of the API's commands, built once: a statement object keeps its cache key,
# so a call skips building and hashing it (about a third of a statement's CPU here).
_USER_BY_ID = select(t.users).where(t.users.c.user_id == bindparam("b_user_id"))
_SUBSCRIPTION_OF = (
    select(*_SUBSCRIPTION_COLUMNS)
    .join(t.users, t.users.c.user_id == t.subscriptions.c.user_id)
    .where(
        t.subscriptions.c.user_id == bindparam("b_user_id"),
        t.subscriptions.c.ticker == bindparam("b_ticker"),
    )
)
_UPDATE_SUBSCRIPTION = update(t.subscriptions).where(
    t.subscriptions.c.subscription_id == bindparam("b_subscription_id")
)
_STATE_OF = select(t.alert_states).where(
    t.alert_states.c.subscription_id == bindparam("b_subscription_id"),
    t.alert_states.c.side == bindparam("b_side"),
)
_STATES_OF = select(t.alert_states).where(
    t.alert_states.c.subscription_id == bindparam("b_subscription_id")
)
_UPDATE_STATE = update(t.alert_states).where(
    t.alert_states.c.subscription_id == bindparam("b_subscription_id"),
    t.alert_states.c.side == bindparam("b_side"),
)
_LATEST_QUOTE = (
    select(t.quotes.c.price, t.quotes.c.quoted_at)
    .where(t.quotes.c.ticker == bindparam("b_ticker"))
    .order_by(t.quotes.c.quoted_at.desc())
    .limit(1)
)
_CLAIM_REQUEST = insert(t.request_ledger)
_REQUEST_WHERE = (
    (t.request_ledger.c.method == bindparam("b_method"))
    & (t.request_ledger.c.subject == bindparam("b_subject"))
    & (t.request_ledger.c.request_id == bindparam("b_request_id"))
)
_STORED_REQUEST = select(t.request_ledger).where(_REQUEST_WHERE)
_COMPLETE_REQUEST = update(t.request_ledger).where(_REQUEST_WHERE)


class SqlUserRepository(_Repo):
    """Users by id and by e-mail."""

    def add(self, user: User) -> None:
        try:
            with self._conn().begin_nested():
                self._conn().execute(
                    insert(t.users).values(
                        user_id=user.user_id,
                        email=user.email.value,
                        password_hash=user.password_hash,
                        created_at=user.created_at,
                        session_version=user.session_version,
                    )
                )
        except IntegrityError:
            # A concurrent registration of the same e-mail won the race.
            raise AlreadyExists(
                f"a user with e-mail {user.email} already exists", field="email"
            ) from None

    def get(self, user_id: str) -> User | None:
        row = self._conn().execute(_USER_BY_ID, {"b_user_id": user_id}).first()
        return None if row is None else _user(row)

    def get_by_email(self, email: Email) -> User | None:
        row = self._conn().execute(select(t.users).where(t.users.c.email == email.value)).first()
        return None if row is None else _user(row)

    def existing(self, user_ids: Collection[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(set(user_ids)):
            found.update(
                self._conn().scalars(select(t.users.c.user_id).where(t.users.c.user_id.in_(chunk)))
            )
        return found

    def end_sessions(self, user_id: str) -> None:
        version = t.users.c.session_version
        self._conn().execute(
            update(t.users).where(t.users.c.user_id == user_id).values(session_version=version + 1)
        )

    def delete(self, user_id: str) -> None:
        self._conn().execute(delete(t.users).where(t.users.c.user_id == user_id))


def _user(row: Any) -> User:
    return User(
        row.user_id, Email(row.email), row.password_hash, row.created_at, row.session_version
    )


class SqlSubscriptionRepository(_Repo):
    """Subscriptions, unique per (user, ticker)."""

    def _select(self) -> Any:
        return select(*_SUBSCRIPTION_COLUMNS).join(
            t.users, t.users.c.user_id == t.subscriptions.c.user_id
        )

    def save(self, subscription: Subscription) -> None:
        values = {
            "user_id": subscription.user_id,
            "ticker": subscription.ticker.value,
            "high_value": subscription.high_value,
            "low_value": subscription.low_value,
            "rearm_percent": subscription.rearm_percent,
            "cooldown_s": subscription.cooldown_s,
            "remind_every_s": subscription.remind_every_s,
        }
        conn = self._conn()
        changed = conn.execute(
            _UPDATE_SUBSCRIPTION, {"b_subscription_id": subscription.subscription_id, **values}
        ).rowcount
        if changed:
            return
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(t.subscriptions).values(
                        subscription_id=subscription.subscription_id, **values
                    )
                )
        except IntegrityError:
            # The same (user, ticker) was created concurrently: run the command again.
            raise ConcurrentDuplicate(subscription.subscription_id) from None

    def get(self, user_id: str, ticker: Ticker) -> Subscription | None:
        row = (
            self._conn()
            .execute(_SUBSCRIPTION_OF, {"b_user_id": user_id, "b_ticker": ticker.value})
            .first()
        )
        return None if row is None else subscription_from_row(row)

    def for_user(self, user_id: str) -> list[Subscription]:
        rows = self._conn().execute(self._select().where(t.subscriptions.c.user_id == user_id))
        return [subscription_from_row(row) for row in rows]

    def for_tickers(self, tickers: Collection[Ticker]) -> list[Subscription]:
        names = sorted(t.value for t in tickers)
        rows = self._conn().execute(self._select().where(t.subscriptions.c.ticker.in_(names)))
        return [subscription_from_row(row) for row in rows]

    def tickers_in_use(self) -> set[Ticker]:
        rows = self._conn().execute(select(t.subscriptions.c.ticker).distinct())
        return {Ticker(row.ticker) for row in rows}

    def watched(self, tickers: Collection[Ticker]) -> set[Ticker]:
        s = t.subscriptions.c
        found: set[Ticker] = set()
        for chunk in _chunks({ticker.value for ticker in tickers}):
            rows = self._conn().execute(select(s.ticker).where(s.ticker.in_(chunk)).distinct())
            found.update(Ticker(row.ticker) for row in rows)
        return found

    def ticker_count(self) -> int:
        s = t.subscriptions.c
        return int(self._conn().scalar(select(func.count(s.ticker.distinct()))) or 0)

    def all(self) -> list[Subscription]:
        return [subscription_from_row(row) for row in self._conn().execute(self._select())]

    def delete(self, subscription_id: str) -> None:
        self._conn().execute(
            delete(t.subscriptions).where(t.subscriptions.c.subscription_id == subscription_id)
        )


class SqlAlertStateRepository(_Repo):
    """Side states by (subscription, side)."""

    def get(self, subscription_id: str, side: Side) -> SideState:
        row = (
            self._conn()
            .execute(_STATE_OF, {"b_subscription_id": subscription_id, "b_side": side.value})
            .first()
        )
        return ARMED if row is None else state_from_row(row)

    def sides(self, subscription_id: str) -> tuple[SideState, SideState]:
        found = {
            Side(row.side): state_from_row(row)
            for row in self._conn().execute(_STATES_OF, {"b_subscription_id": subscription_id})
        }
        return found.get(Side.HIGH, ARMED), found.get(Side.LOW, ARMED)

    def save_sides(self, subscription_id: str, high: SideState, low: SideState) -> None:
        _upsert(
            self._conn(),
            t.alert_states,
            [_state_row(subscription_id, side, state) for side, state in _pair(high, low)],
        )

    def save(self, subscription_id: str, side: Side, state: SideState) -> None:
        values = {
            "status": state.status.value,
            "episode": state.episode,
            "fired_at": state.fired_at,
            "reminders": state.reminders,
            "next_reminder_at": state.next_reminder_at,
        }
        conn = self._conn()
        changed = conn.execute(
            _UPDATE_STATE, {"b_subscription_id": subscription_id, "b_side": side.value, **values}
        ).rowcount
        if not changed:
            exists = conn.execute(
                select(t.subscriptions.c.subscription_id).where(
                    t.subscriptions.c.subscription_id == subscription_id
                )
            ).first()
            if exists is None:
                return  # removed meanwhile: its state goes with it
            conn.execute(
                insert(t.alert_states).values(
                    subscription_id=subscription_id, side=side.value, **values
                )
            )

    def save_many(self, states: Sequence[tuple[str, Side, SideState]]) -> None:
        if not states:
            return
        conn = self._conn()
        ids = {subscription_id for subscription_id, _, _ in states}
        present: set[str] = set()
        for chunk in _chunks(ids):
            s = t.subscriptions.c
            present.update(
                conn.scalars(select(s.subscription_id).where(s.subscription_id.in_(chunk)))
            )
        rows = [
            _state_row(subscription_id, side, state)
            for subscription_id, side, state in states
            if subscription_id in present  # removed meanwhile: its states went with it
        ]
        _upsert(conn, t.alert_states, rows)

    def all(self) -> dict[tuple[str, Side], SideState]:
        rows = self._conn().execute(select(t.alert_states))
        return {(row.subscription_id, Side(row.side)): state_from_row(row) for row in rows}

    def for_tickers(self, tickers: Collection[Ticker]) -> dict[tuple[str, Side], SideState]:
        names = sorted(t.value for t in tickers)
        rows = self._conn().execute(
            select(t.alert_states)
            .join(
                t.subscriptions,
                t.subscriptions.c.subscription_id == t.alert_states.c.subscription_id,
            )
            .where(t.subscriptions.c.ticker.in_(names))
        )
        return {(row.subscription_id, Side(row.side)): state_from_row(row) for row in rows}

    def delete_for(self, subscription_id: str) -> None:
        self._conn().execute(
            delete(t.alert_states).where(t.alert_states.c.subscription_id == subscription_id)
        )


class SqlAlertProgressRepository(_Repo):
    """High-water marks of applied quotes, by ticker."""

    def get_many(self, tickers: Collection[Ticker]) -> dict[Ticker, datetime]:
        names = sorted(t.value for t in tickers)
        rows = self._conn().execute(
            select(t.alert_progress).where(t.alert_progress.c.ticker.in_(names))
        )
        return {Ticker(row.ticker): row.applied_through for row in rows}

    def all(self) -> dict[Ticker, datetime]:
        rows = self._conn().execute(select(t.alert_progress))
        return {Ticker(row.ticker): row.applied_through for row in rows}

    def save(self, ticker: Ticker, applied_through: datetime) -> None:
        conn = self._conn()
        changed = conn.execute(
            update(t.alert_progress)
            .where(t.alert_progress.c.ticker == ticker.value)
            .values(applied_through=applied_through)
        ).rowcount
        if not changed:
            # One owner per ticker (the embedded run, or the alert-system instance of its
            # partition), so no concurrent insert of the same ticker.
            conn.execute(
                insert(t.alert_progress).values(
                    ticker=ticker.value, applied_through=applied_through
                )
            )

    def save_many(self, marks: Mapping[Ticker, datetime]) -> None:
        rows = [
            {"ticker": k.value, "applied_through": at}
            for k, at in sorted(marks.items(), key=lambda item: item[0].value)
        ]
        _upsert(self._conn(), t.alert_progress, rows)


class SqlQuoteRepository(_Repo):
    """Collected quotes."""

    def latest(self, ticker: Ticker) -> Quote | None:
        row = self._conn().execute(_LATEST_QUOTE, {"b_ticker": ticker.value}).first()
        return None if row is None else Quote(ticker, row.price, row.quoted_at)

    def newer_than(self, ticker: Ticker, after: datetime | None) -> list[Quote]:
        q = t.quotes.c
        query = select(q.price, q.quoted_at, q.correlation_id).where(q.ticker == ticker.value)
        if after is not None:
            query = query.where(q.quoted_at > after)
        rows = self._conn().execute(query.order_by(q.quoted_at))
        return [
            Quote(ticker, row.price, row.quoted_at, correlation_id=row.correlation_id)
            for row in rows
        ]

    def latest_many(self, tickers: Collection[Ticker]) -> dict[Ticker, Quote]:
        q = t.quotes.c
        found: dict[Ticker, Quote] = {}
        for chunk in _chunks({ticker.value for ticker in tickers}):
            newest = (
                select(q.ticker, func.max(q.quoted_at).label("at"))
                .where(q.ticker.in_(chunk))
                .group_by(q.ticker)
                .subquery()
            )
            rows = self._conn().execute(
                select(q.ticker, q.price, q.quoted_at).join(
                    newest, (newest.c.ticker == q.ticker) & (newest.c.at == q.quoted_at)
                )
            )
            for row in rows:
                ticker = Ticker(row.ticker)
                found[ticker] = Quote(ticker, row.price, row.quoted_at)
        return found

    def latest_collected_at(self, ticker: Ticker) -> datetime | None:
        return self.latest_collected_many([ticker]).get(ticker)

    def latest_collected_many(self, tickers: Collection[Ticker]) -> dict[Ticker, datetime]:
        q = t.quotes.c
        found: dict[Ticker, datetime] = {}
        for chunk in _chunks({ticker.value for ticker in tickers}):
            rows = self._conn().execute(
                select(q.ticker, func.max(q.collected_at))
                .where(q.ticker.in_(chunk))
                .group_by(q.ticker)
            )
            for name, value in rows:
                if value is None:
                    continue
                # SQLite returns max() of a DATETIME as text
                at = datetime.fromisoformat(value) if isinstance(value, str) else value
                found[Ticker(name)] = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        return found

    def latest_quotes(self) -> list[Quote]:
        newest = (
            select(t.quotes.c.ticker, func.max(t.quotes.c.quoted_at).label("at"))
            .group_by(t.quotes.c.ticker)
            .subquery()
        )
        rows = self._conn().execute(
            select(t.quotes.c.ticker, t.quotes.c.price, t.quotes.c.quoted_at).join(
                newest,
                (newest.c.ticker == t.quotes.c.ticker) & (newest.c.at == t.quotes.c.quoted_at),
            )
        )
        return [Quote(Ticker(row.ticker), row.price, row.quoted_at) for row in rows]

    def add(self, quote: Quote, collected_at: datetime) -> None:
        self._conn().execute(
            insert(t.quotes).values(
                ticker=quote.ticker.value,
                price=quote.price,
                quoted_at=quote.quoted_at,
                collected_at=collected_at,
                correlation_id=quote.correlation_id,
            )
        )

    def prune(self, older_than: datetime, keep_newest: int) -> int:
        """Drop quotes of unfollowed tickers, and followed ones both old and not newest N."""
        conn = self._conn()
        followed = select(t.subscriptions.c.ticker).distinct()
        removed = conn.execute(delete(t.quotes).where(t.quotes.c.ticker.not_in(followed))).rowcount
        for (ticker,) in conn.execute(followed).all():
            nth = conn.execute(
                select(t.quotes.c.quoted_at)
                .where(t.quotes.c.ticker == ticker)
                .order_by(t.quotes.c.quoted_at.desc())
                .offset(keep_newest - 1)
                .limit(1)
            ).scalar()
            if nth is None:
                continue  # fewer than keep_newest quotes: keep them all
            cutoff = min(older_than, nth)
            removed += conn.execute(
                delete(t.quotes).where(t.quotes.c.ticker == ticker, t.quotes.c.quoted_at < cutoff)
            ).rowcount
        return int(removed)


class SqlTickerStatusRepository(_Repo):
    """Ticker statuses by ticker."""

    def save(self, ticker: Ticker, status: TickerStatus, reason: str | None, at: datetime) -> None:
        values = {
            "status": status.value,
            "reason": None if reason is None else reason[:200],
            "updated_at": at,
        }
        conn = self._conn()
        changed = conn.execute(
            update(t.ticker_status).where(t.ticker_status.c.ticker == ticker.value).values(**values)
        ).rowcount
        if not changed:
            try:
                with conn.begin_nested():
                    conn.execute(insert(t.ticker_status).values(ticker=ticker.value, **values))
            except IntegrityError:  # two collectors marked it at once: the later wins
                conn.execute(
                    update(t.ticker_status)
                    .where(t.ticker_status.c.ticker == ticker.value)
                    .values(**values)
                )

    def get(self, ticker: Ticker) -> TickerStatus | None:
        status = (
            self._conn()
            .execute(
                select(t.ticker_status.c.status).where(t.ticker_status.c.ticker == ticker.value)
            )
            .scalar()
        )
        return None if status is None else TickerStatus(status)

    def get_many(self, tickers: Collection[Ticker]) -> dict[Ticker, TickerStatus]:
        s = t.ticker_status.c
        found: dict[Ticker, TickerStatus] = {}
        for chunk in _chunks({ticker.value for ticker in tickers}):
            for name, status in self._conn().execute(
                select(s.ticker, s.status).where(s.ticker.in_(chunk))
            ):
                found[Ticker(name)] = TickerStatus(status)
        return found


class SqlLoginFailureRepository(_Repo):
    """Failed logins per throttle key, shared by every command-api instance."""

    def get_many(self, keys: Collection[str], lock: bool = False) -> dict[str, FailedLogins]:
        f = t.login_failures.c
        query = select(t.login_failures).where(f.throttle_key.in_(sorted(keys)))
        if lock and self._conn().dialect.name != "sqlite":  # SQLite's writers queue anyway
            query = query.with_for_update()  # concurrent failures count one after the other
        return {
            row.throttle_key: FailedLogins(row.failures, row.last_failure_at, row.blocked_until)
            for row in self._conn().execute(query)
        }

    def save(self, key: str, state: FailedLogins) -> None:
        row = {
            "throttle_key": key,
            "failures": state.failures,
            "last_failure_at": state.last_failure_at,
            "blocked_until": state.blocked_until,
        }
        _upsert(self._conn(), t.login_failures, [row])

    def clear(self, keys: Collection[str]) -> None:
        f = t.login_failures.c
        self._conn().execute(delete(t.login_failures).where(f.throttle_key.in_(sorted(keys))))

    def forget_before(self, cutoff: datetime) -> int:
        f = t.login_failures.c
        result = self._conn().execute(delete(t.login_failures).where(f.last_failure_at < cutoff))
        return int(result.rowcount or 0)


class SqlNotificationLedger(_Repo):
    """Every notification raised, unique by id, with delivery status."""

    def get(self, notification_id: str) -> NotificationRecord | None:
        row = (
            self._conn()
            .execute(
                select(t.notifications).where(t.notifications.c.notification_id == notification_id)
            )
            .first()
        )
        return None if row is None else record_from_row(row)

    def get_many(self, notification_ids: Collection[str]) -> dict[str, NotificationRecord]:
        found: dict[str, NotificationRecord] = {}
        n = t.notifications.c
        for chunk in _chunks(set(notification_ids)):
            for row in self._conn().execute(
                select(t.notifications).where(n.notification_id.in_(chunk))
            ):
                found[row.notification_id] = record_from_row(row)
        return found

    def add(self, record: NotificationRecord) -> None:
        self._conn().execute(insert(t.notifications).values(**_record_values(record)))

    def add_new(self, records: Sequence[NotificationRecord]) -> int:
        if not records:
            return 0
        conn = self._conn()
        known: set[str] = set()
        for chunk in _chunks({r.notification.notification_id for r in records}):
            known.update(
                conn.scalars(
                    select(t.notifications.c.notification_id).where(
                        t.notifications.c.notification_id.in_(chunk)
                    )
                )
            )
        fresh = [_record_values(r) for r in records if r.notification.notification_id not in known]
        if fresh:
            conn.execute(insert(t.notifications), fresh)
        return len(fresh)

    def delete(self, notification_id: str) -> None:
        self._conn().execute(
            delete(t.notifications).where(t.notifications.c.notification_id == notification_id)
        )

    def update(self, record: NotificationRecord) -> None:
        # Only the delivery columns change (a notification itself never does); the statement
        # is built once: building it per call cost more CPU than the round trip.
        self._conn().execute(
            _UPDATE_DELIVERY,
            {
                "key": record.notification.notification_id,
                "status": record.status.value,
                "attempts": record.attempts,
                "last_error": None if record.last_error is None else record.last_error[:1000],
                "sent_at": record.sent_at,
                "next_attempt_at": record.next_attempt_at,
            },
        )

    def due_users(self, due_at: datetime, after: str | None, limit: int) -> list[str]:
        n = t.notifications.c
        query = (
            select(n.user_id)
            .where(
                n.status == DeliveryStatus.PENDING.value,
                or_(n.next_attempt_at.is_(None), n.next_attempt_at <= due_at),
            )
            .distinct()
            .order_by(n.user_id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(n.user_id > after)
        return [str(user_id) for user_id in self._conn().scalars(query)]

    def pending_of(self, user_id: str, limit: int) -> list[NotificationRecord]:
        return self.pending_of_users([user_id], limit).get(user_id, [])

    def pending_of_users(
        self, user_ids: Collection[str], limit: int
    ) -> dict[str, list[NotificationRecord]]:
        # Every PENDING row of these users is read (a user has few: one per side of each
        # subscription and crossing not yet sent) and cut to `limit` each here.
        n = t.notifications.c
        found: dict[str, list[NotificationRecord]] = {}
        for chunk in _chunks(set(user_ids)):
            rows = self._conn().execute(
                select(t.notifications)
                .where(n.user_id.in_(chunk), n.status == DeliveryStatus.PENDING.value)
                .order_by(n.user_id, n.quoted_at, n.ticker, n.notification_id)
            )
            for row in rows:
                queue = found.setdefault(row.user_id, [])
                if len(queue) < limit:
                    queue.append(record_from_row(row))
        return found

    def delete_for_user(self, user_id: str) -> None:
        self._conn().execute(delete(t.notifications).where(t.notifications.c.user_id == user_id))


_UPDATE_DELIVERY = (
    update(t.notifications)
    .where(t.notifications.c.notification_id == bindparam("key"))
    .values(
        status=bindparam("status"),
        attempts=bindparam("attempts"),
        last_error=bindparam("last_error"),
        sent_at=bindparam("sent_at"),
        next_attempt_at=bindparam("next_attempt_at"),
    )
)


def _record_values(record: NotificationRecord) -> dict[str, Any]:
    note = record.notification
    return {
        "notification_id": note.notification_id,
        "subscription_id": note.subscription_id,
        "user_id": note.user_id,
        "email": note.email.value,
        "ticker": note.ticker.value,
        "side": note.side.value,
        "kind": note.kind.value,
        "price": note.price,
        "threshold": note.threshold,
        "quoted_at": note.quoted_at,
        "episode": note.episode,
        "correlation_id": note.correlation_id,
        "status": record.status.value,
        "attempts": record.attempts,
        "last_error": None if record.last_error is None else record.last_error[:1000],
        "created_at": record.created_at,
        "sent_at": record.sent_at,
        "next_attempt_at": record.next_attempt_at,
    }


class SqlRequestLedger(_Repo):
    """Stored replies; a unique key makes concurrent duplicates execute once."""

    def __init__(self, connection: Conn, now: Callable[[], datetime]) -> None:
        super().__init__(connection)
        self._now = now

    @staticmethod
    def _key(key: RequestKey) -> dict[str, str]:
        return {"b_method": key.method, "b_subject": key.subject, "b_request_id": key.request_id}

    def claim(self, key: RequestKey) -> StoredReply | None:
        conn = self._conn()
        try:
            # Reserve the key first: the common case (a new request) is one statement. A
            # concurrent duplicate blocks here until the first transaction ends, then fails
            # on the unique key. On MySQL/MariaDB and SQLite a failed INSERT undoes itself
            # only, not the transaction, so no savepoint is needed around it.
            conn.execute(
                _CLAIM_REQUEST,
                {
                    "method": key.method,
                    "subject": key.subject,
                    "request_id": key.request_id,
                    "created_at": self._now(),
                },
            )
        except IntegrityError:
            row = conn.execute(_STORED_REQUEST, self._key(key)).first()
            if row is None or row.fingerprint is None:
                raise ConcurrentDuplicate(key.request_id) from None
            return StoredReply(
                fingerprint=row.fingerprint,
                code=None if row.code is None else ErrorCode(row.code),
                message=row.message or "",
                field=row.field,
                result=decode_result(row.result),
                created_at=row.created_at,
            )
        return None

    def complete(self, key: RequestKey, reply: StoredReply) -> None:
        values = {
            "fingerprint": reply.fingerprint,
            "code": None if reply.code is None else reply.code.value,
            "message": reply.message,
            "field": reply.field,
            "result": encode_result(reply.result),
            "created_at": reply.created_at,
        }
        conn = self._conn()
        changed = conn.execute(_COMPLETE_REQUEST, {**self._key(key), **values}).rowcount
        if not changed:  # the claim was dropped by forget_subject (DeleteUser) in this txn
            conn.execute(
                insert(t.request_ledger).values(
                    method=key.method, subject=key.subject, request_id=key.request_id, **values
                )
            )

    def forget_subject(self, subject: str) -> None:
        self._conn().execute(delete(t.request_ledger).where(t.request_ledger.c.subject == subject))

    def expire_before(self, cutoff: datetime) -> int:
        return int(
            self._conn()
            .execute(delete(t.request_ledger).where(t.request_ledger.c.created_at < cutoff))
            .rowcount
        )

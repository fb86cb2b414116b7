"""In-memory storage: the unit of work, its repositories and the read model.

They are real implementations, not mocks: the unit of work is transactional (an undo log,
savepoints) and serialises transactions with a lock, so at-most-once and "nothing
half-written" hold here exactly as they must on a database. Used by unit tests, the library
(`stockalert backtest`) and `STOCKALERT_DB_URL=memory://`.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import attrs

from stockalert.adapters.outbox import Checkpoints, OutboxEncoder, OutboxRow
from stockalert.domain.commands import RequestKey
from stockalert.domain.events import Event
from stockalert.domain.model import (
    ARMED,
    DeliveryStatus,
    Email,
    FailedLogins,
    NotificationRecord,
    Quote,
    Side,
    SideState,
    Subscription,
    Ticker,
    TickerStatus,
    User,
    visible_ticker_status,
)
from stockalert.domain.ports import StoredReply
from stockalert.domain.views import SubscriptionView

_MISSING = object()
K = TypeVar("K")
V = TypeVar("V")


class MemoryStore:
    """The shared state behind memory units of work and the memory read model."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users: dict[str, User] = {}
        self.user_by_email: dict[Email, str] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.sub_by_user_ticker: dict[tuple[str, Ticker], str] = {}
        self.alert_states: dict[tuple[str, Side], SideState] = {}
        self.alert_progress: dict[Ticker, datetime] = {}
        self.quotes: dict[Ticker, list[Quote]] = {}  # ascending quoted_at
        self.ticker_status: dict[Ticker, tuple[TickerStatus, str | None, datetime]] = {}
        self.collected_at: dict[Ticker, datetime] = {}
        self.notifications: dict[str, NotificationRecord] = {}
        self.requests: dict[RequestKey, StoredReply] = {}
        self.outbox: dict[int, OutboxRow] = {}
        self.outbox_ids = itertools.count(1)
        self.outbox_checkpoints: dict[tuple[str, int], int] = {}
        self.leases: dict[str, tuple[str, datetime]] = {}
        self.login_failures: dict[str, FailedLogins] = {}

    def snapshot(self, *, without: Collection[str] = ()) -> dict[str, dict[Any, Any]]:
        """A copy of every table (but those named in `without`), to compare before and after:
        the values are immutable, so copying the dicts is enough."""
        with self.lock:
            return {
                name: dict(table)
                for name, table in vars(self).items()
                if isinstance(table, dict) and name not in without
            }


class _Journal:
    """Undo log of one transaction."""

    def __init__(self) -> None:
        self.undo: list[Callable[[], None]] = []

    def set(self, table: dict[K, V], key: K, value: V) -> None:
        old: Any = table.get(key, _MISSING)
        table[key] = value
        self.undo.append(lambda: _restore(table, key, old))

    def pop(self, table: dict[K, V], key: K) -> None:
        old: Any = table.pop(key, _MISSING)
        if old is not _MISSING:
            self.undo.append(lambda: _restore(table, key, old))

    def rollback_to(self, mark: int) -> None:
        while len(self.undo) > mark:
            self.undo.pop()()


def _restore(table: dict[K, V], key: K, old: object) -> None:
    if old is _MISSING:
        table.pop(key, None)
    else:
        table[key] = cast("V", old)


class _Repo:
    def __init__(self, store: MemoryStore, journal: Callable[[], _Journal]) -> None:
        self._store = store
        self._journal = journal


class MemoryUserRepository(_Repo):
    """Users by id and by e-mail."""

    def add(self, user: User) -> None:
        self._journal().set(self._store.users, user.user_id, user)
        self._journal().set(self._store.user_by_email, user.email, user.user_id)

    def get(self, user_id: str) -> User | None:
        return self._store.users.get(user_id)

    def get_by_email(self, email: Email) -> User | None:
        user_id = self._store.user_by_email.get(email)
        return None if user_id is None else self._store.users.get(user_id)

    def existing(self, user_ids: Collection[str]) -> set[str]:
        return {u for u in user_ids if u in self._store.users}

    def end_sessions(self, user_id: str) -> None:
        user = self._store.users.get(user_id)
        if user is not None:
            later = attrs.evolve(user, session_version=user.session_version + 1)
            self._journal().set(self._store.users, user_id, later)

    def delete(self, user_id: str) -> None:
        user = self._store.users.get(user_id)
        if user is not None:
            self._journal().pop(self._store.user_by_email, user.email)
            self._journal().pop(self._store.users, user_id)


class MemoryLoginFailureRepository(_Repo):
    """Failed logins per throttle key."""

    def get_many(self, keys: Collection[str], lock: bool = False) -> dict[str, FailedLogins]:
        found = self._store.login_failures  # a memory transaction holds the store
        return {key: found[key] for key in keys if key in found}

    def save(self, key: str, state: FailedLogins) -> None:
        self._journal().set(self._store.login_failures, key, state)

    def clear(self, keys: Collection[str]) -> None:
        for key in keys:
            if key in self._store.login_failures:
                self._journal().pop(self._store.login_failures, key)

    def forget_before(self, cutoff: datetime) -> int:
        old = [k for k, v in self._store.login_failures.items() if v.last_failure_at < cutoff]
        self.clear(old)
        return len(old)


class MemorySubscriptionRepository(_Repo):
    """Subscriptions, unique per (user, ticker)."""

    def save(self, subscription: Subscription) -> None:
        key = (subscription.user_id, subscription.ticker)
        self._journal().set(self._store.subscriptions, subscription.subscription_id, subscription)
        self._journal().set(self._store.sub_by_user_ticker, key, subscription.subscription_id)

    def get(self, user_id: str, ticker: Ticker) -> Subscription | None:
        sid = self._store.sub_by_user_ticker.get((user_id, ticker))
        return None if sid is None else self._store.subscriptions.get(sid)

    def for_user(self, user_id: str) -> list[Subscription]:
        return [s for s in self._store.subscriptions.values() if s.user_id == user_id]

    def for_tickers(self, tickers: Collection[Ticker]) -> list[Subscription]:
        wanted = set(tickers)
        return [s for s in self._store.subscriptions.values() if s.ticker in wanted]

    def tickers_in_use(self) -> set[Ticker]:
        return {ticker for _, ticker in self._store.sub_by_user_ticker}

    def watched(self, tickers: Collection[Ticker]) -> set[Ticker]:
        return self.tickers_in_use() & set(tickers)

    def ticker_count(self) -> int:
        return len(self.tickers_in_use())

    def all(self) -> list[Subscription]:
        return list(self._store.subscriptions.values())

    def delete(self, subscription_id: str) -> None:
        sub = self._store.subscriptions.get(subscription_id)
        if sub is not None:
            self._journal().pop(self._store.sub_by_user_ticker, (sub.user_id, sub.ticker))
            self._journal().pop(self._store.subscriptions, subscription_id)


class MemoryAlertStateRepository(_Repo):
    """Side states by (subscription, side)."""

    def get(self, subscription_id: str, side: Side) -> SideState:
        return self._store.alert_states.get((subscription_id, side), ARMED)

    def sides(self, subscription_id: str) -> tuple[SideState, SideState]:
        return self.get(subscription_id, Side.HIGH), self.get(subscription_id, Side.LOW)

    def save(self, subscription_id: str, side: Side, state: SideState) -> None:
        self._journal().set(self._store.alert_states, (subscription_id, side), state)

    def save_sides(self, subscription_id: str, high: SideState, low: SideState) -> None:
        self.save(subscription_id, Side.HIGH, high)
        self.save(subscription_id, Side.LOW, low)

    def save_many(self, states: Sequence[tuple[str, Side, SideState]]) -> None:
        for subscription_id, side, state in states:
            if subscription_id in self._store.subscriptions:
                self.save(subscription_id, side, state)

    def all(self) -> dict[tuple[str, Side], SideState]:
        return dict(self._store.alert_states)

    def for_tickers(self, tickers: Collection[Ticker]) -> dict[tuple[str, Side], SideState]:
        wanted = set(tickers)
        subs = self._store.subscriptions
        return {
            key: state
            for key, state in self._store.alert_states.items()
            if key[0] in subs and subs[key[0]].ticker in wanted
        }

    def delete_for(self, subscription_id: str) -> None:
        for side in (Side.HIGH, Side.LOW):
            self._journal().pop(self._store.alert_states, (subscription_id, side))


class MemoryAlertProgressRepository(_Repo):
    """High-water marks of applied quotes, by ticker."""

    def get_many(self, tickers: Collection[Ticker]) -> dict[Ticker, datetime]:
        marks = self._store.alert_progress
        return {t: marks[t] for t in tickers if t in marks}

    def all(self) -> dict[Ticker, datetime]:
        return dict(self._store.alert_progress)

    def save(self, ticker: Ticker, applied_through: datetime) -> None:
        self._journal().set(self._store.alert_progress, ticker, applied_through)

    def save_many(self, marks: Mapping[Ticker, datetime]) -> None:
        for ticker, applied_through in marks.items():
            self.save(ticker, applied_through)


class MemoryQuoteRepository(_Repo):
    """Quotes per ticker, kept in quote-time order."""

    def latest(self, ticker: Ticker) -> Quote | None:
        quotes = self._store.quotes.get(ticker)
        return quotes[-1] if quotes else None

    def latest_quotes(self) -> list[Quote]:
        return [quotes[-1] for quotes in self._store.quotes.values() if quotes]

    def newer_than(self, ticker: Ticker, after: datetime | None) -> list[Quote]:
        quotes = self._store.quotes.get(ticker, [])
        return [q for q in quotes if after is None or q.quoted_at > after]

    def latest_many(self, tickers: Collection[Ticker]) -> dict[Ticker, Quote]:
        found = {ticker: self.latest(ticker) for ticker in tickers}
        return {ticker: quote for ticker, quote in found.items() if quote is not None}

    def latest_collected_many(self, tickers: Collection[Ticker]) -> dict[Ticker, datetime]:
        found = {ticker: self.latest_collected_at(ticker) for ticker in tickers}
        return {ticker: at for ticker, at in found.items() if at is not None}

    def latest_collected_at(self, ticker: Ticker) -> datetime | None:
        return self._store.collected_at.get(ticker) if self._store.quotes.get(ticker) else None

    def prune(self, older_than: datetime, keep_newest: int) -> int:
        followed = {ticker for _, ticker in self._store.sub_by_user_ticker}
        removed = 0
        for ticker, quotes in list(self._store.quotes.items()):
            if ticker not in followed:
                kept: list[Quote] = []
            else:
                cutoff = len(quotes) - keep_newest
                kept = [q for i, q in enumerate(quotes) if i >= cutoff or q.quoted_at >= older_than]
            if len(kept) != len(quotes):
                removed += len(quotes) - len(kept)
                if kept:
                    self._journal().set(self._store.quotes, ticker, kept)
                else:
                    self._journal().pop(self._store.quotes, ticker)
        return removed

    def add(self, quote: Quote, collected_at: datetime) -> None:
        old = self._store.quotes.get(quote.ticker, [])
        new = list(old)
        bisect.insort(new, quote, key=lambda q: q.quoted_at)
        self._journal().set(self._store.quotes, quote.ticker, new)
        previous = self._store.collected_at.get(quote.ticker)
        if previous is None or collected_at > previous:
            self._journal().set(self._store.collected_at, quote.ticker, collected_at)


class MemoryTickerStatusRepository(_Repo):
    """Ticker statuses by ticker."""

    def save(self, ticker: Ticker, status: TickerStatus, reason: str | None, at: datetime) -> None:
        self._journal().set(self._store.ticker_status, ticker, (status, reason, at))

    def get(self, ticker: Ticker) -> TickerStatus | None:
        entry = self._store.ticker_status.get(ticker)
        return None if entry is None else entry[0]

    def get_many(self, tickers: Collection[Ticker]) -> dict[Ticker, TickerStatus]:
        known = self._store.ticker_status
        return {ticker: known[ticker][0] for ticker in tickers if ticker in known}


class MemoryNotificationLedger(_Repo):
    """Notification records by id."""

    def get(self, notification_id: str) -> NotificationRecord | None:
        return self._store.notifications.get(notification_id)

    def get_many(self, notification_ids: Collection[str]) -> dict[str, NotificationRecord]:
        known = self._store.notifications
        return {n: known[n] for n in notification_ids if n in known}

    def add(self, record: NotificationRecord) -> None:
        key = record.notification.notification_id
        if key in self._store.notifications:
            raise KeyError(f"notification {key} is in the ledger already")
        self._journal().set(self._store.notifications, key, record)

    def add_new(self, records: Sequence[NotificationRecord]) -> int:
        fresh = [
            r for r in records if r.notification.notification_id not in self._store.notifications
        ]
        for record in fresh:
            self.add(record)
        return len(fresh)

    def update(self, record: NotificationRecord) -> None:
        key = record.notification.notification_id
        if key in self._store.notifications:  # gone (its user deleted): nothing to update
            self._journal().set(self._store.notifications, key, record)

    def delete(self, notification_id: str) -> None:
        self._journal().pop(self._store.notifications, notification_id)

    def due_users(self, due_at: datetime, after: str | None, limit: int) -> list[str]:
        users = {
            r.notification.user_id
            for r in self._store.notifications.values()
            if r.status == "PENDING"
            and (r.next_attempt_at is None or r.next_attempt_at <= due_at)
            and (after is None or r.notification.user_id > after)
        }
        return sorted(users)[:limit]

    def pending_of(self, user_id: str, limit: int) -> list[NotificationRecord]:
        return self.pending_of_users([user_id], limit).get(user_id, [])

    def pending_of_users(
        self, user_ids: Collection[str], limit: int
    ) -> dict[str, list[NotificationRecord]]:
        wanted = set(user_ids)
        found: dict[str, list[NotificationRecord]] = {}
        for record in self._store.notifications.values():
            if record.status == "PENDING" and record.notification.user_id in wanted:
                found.setdefault(record.notification.user_id, []).append(record)
        for queue in found.values():
            queue.sort(key=_delivery_order)
            del queue[limit:]
        return found

    def delete_for_user(self, user_id: str) -> None:
        doomed = [
            key
            for key, record in self._store.notifications.items()
            if record.notification.user_id == user_id
        ]
        for key in doomed:
            self._journal().pop(self._store.notifications, key)


class MemoryRequestLedger(_Repo):
    """Stored replies; the store's lock serialises claims, so duplicates never race."""

    def claim(self, key: RequestKey) -> StoredReply | None:
        return self._store.requests.get(key)

    def complete(self, key: RequestKey, reply: StoredReply) -> None:
        self._journal().set(self._store.requests, key, reply)

    def forget_subject(self, subject: str) -> None:
        for key in [k for k in self._store.requests if k.subject == subject]:
            self._journal().pop(self._store.requests, key)

    def expire_before(self, cutoff: datetime) -> int:
        """Drop replies older than `cutoff`; returns how many."""
        old = [k for k, r in self._store.requests.items() if r.created_at < cutoff]
        for key in old:
            self._journal().pop(self._store.requests, key)
        return len(old)


class MemoryUnitOfWork:
    """A transaction over a MemoryStore: holds the store lock from enter to exit."""

    def __init__(self, store: MemoryStore, outbox: OutboxEncoder | None = None) -> None:
        self._store = store
        self._outbox = outbox
        self._journal: _Journal | None = None
        self._pending: list[Event] = []
        self._committed: list[Event] = []
        journal = self._current_journal
        self.users = MemoryUserRepository(store, journal)
        self.subscriptions = MemorySubscriptionRepository(store, journal)
        self.alert_states = MemoryAlertStateRepository(store, journal)
        self.alert_progress = MemoryAlertProgressRepository(store, journal)
        self.quotes = MemoryQuoteRepository(store, journal)
        self.tickers = MemoryTickerStatusRepository(store, journal)
        self.notifications = MemoryNotificationLedger(store, journal)
        self.requests = MemoryRequestLedger(store, journal)
        self.login_failures = MemoryLoginFailureRepository(store, journal)

    def _current_journal(self) -> _Journal:
        if self._journal is None:
            raise RuntimeError("use the unit of work inside a `with` block")
        return self._journal

    def __enter__(self) -> Self:
        self._store.lock.acquire()
        self._journal = _Journal()
        self._pending = []
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.rollback()
        finally:
            self._journal = None
            self._store.lock.release()

    def commit(self) -> None:
        journal = self._current_journal()
        if self._outbox is not None:
            # The transactional outbox: the messages of this transaction's events.
            for message in filter(None, map(self._outbox, self._pending)):
                outbox_id = next(self._store.outbox_ids)
                self._store.outbox[outbox_id] = OutboxRow(outbox_id, message)
        journal.undo.clear()
        self._committed.extend(self._pending)
        self._pending = []

    def rollback(self) -> None:
        if self._journal is not None:
            self._journal.rollback_to(0)
        self._pending = []

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        journal = self._current_journal()
        mark, events = len(journal.undo), len(self._pending)
        try:
            yield
        except BaseException:
            journal.rollback_to(mark)
            del self._pending[events:]
            raise

    def savepoint(self) -> AbstractContextManager[None]:
        return self._savepoint()

    def record(self, event: Event) -> None:
        self._current_journal()
        self._pending.append(event)

    def collect_events(self) -> Iterator[Event]:
        while self._committed:
            yield self._committed.pop(0)


class MemoryOutboxStore:
    """OutboxStore over a MemoryStore (unit tests of the relay)."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def pending(self, limit: int) -> list[OutboxRow]:
        with self._store.lock:
            return [self._store.outbox[i] for i in sorted(self._store.outbox)[:limit]]

    def checkpoints(self) -> dict[tuple[str, int], int]:
        with self._store.lock:
            return dict(self._store.outbox_checkpoints)

    def publish_done(self, outbox_ids: Collection[int], checkpoints: Checkpoints) -> None:
        with self._store.lock:
            for outbox_id in outbox_ids:
                self._store.outbox.pop(outbox_id, None)
            self._store.outbox_checkpoints.update(checkpoints)

    def take_lease(self, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
        with self._store.lock:
            holder = self._store.leases.get(name)
            if holder is not None and holder[0] != owner and holder[1] >= now:
                return False
            self._store.leases[name] = (owner, now + ttl)
            return True


class MemoryReadModel:
    """Query-side views straight off the memory store."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._store.lock:  # units of work hold it too: no commit lands in between
            yield

    def user_exists(self, user_id: str) -> bool:
        return user_id in self._store.users

    def session_version(self, user_id: str) -> int | None:
        user = self._store.users.get(user_id)
        return None if user is None else user.session_version

    def watched_tickers(self, user_id: str) -> list[Ticker] | None:
        with self._store.lock:
            if user_id not in self._store.users:
                return None
            return [s.ticker for s in self._store.subscriptions.values() if s.user_id == user_id]

    def subscriptions_of(self, user_id: str) -> list[SubscriptionView] | None:
        with self._store.lock:
            if user_id not in self._store.users:
                return None
            subs = [s for s in self._store.subscriptions.values() if s.user_id == user_id]
            views = []
            for sub in subs:
                high = self._store.alert_states.get((sub.subscription_id, Side.HIGH), ARMED)
                low = self._store.alert_states.get((sub.subscription_id, Side.LOW), ARMED)
                marked = self._store.ticker_status.get(sub.ticker)
                status = visible_ticker_status(
                    None if marked is None else marked[0], bool(self._store.quotes.get(sub.ticker))
                )
                views.append(SubscriptionView.of(sub, high, low, status))
            return views

    def latest_of_watched(
        self, user_id: str, ticker: Ticker | None = None
    ) -> dict[Ticker, Quote | None] | None:
        with self._store.lock:
            watched = self.watched_tickers(user_id)
            if watched is None:
                return None
            found: dict[Ticker, Quote | None] = {}
            for each in watched:
                if ticker is not None and each != ticker:
                    continue
                quotes = self._store.quotes.get(each)
                found[each] = quotes[-1] if quotes else None
            return found

    def newest_prices(self, ticker: Ticker, count: int) -> Sequence[float]:
        quotes = self._store.quotes.get(ticker, [])
        return [q.price for q in quotes[-count:]]

    def pending_notifications(self) -> int:
        with self._store.lock:
            return sum(
                r.status is DeliveryStatus.PENDING for r in self._store.notifications.values()
            )

    def notifications_of(self, user_id: str, limit: int) -> list[NotificationRecord]:
        with self._store.lock:
            mine = [
                r for r in self._store.notifications.values() if r.notification.user_id == user_id
            ]
        mine.sort(
            key=lambda r: (r.notification.quoted_at, r.notification.notification_id), reverse=True
        )
        return mine[:limit]


def _delivery_order(record: NotificationRecord) -> tuple[datetime, str, str]:
    note = record.notification
    return (note.quoted_at, note.ticker.value, note.notification_id)

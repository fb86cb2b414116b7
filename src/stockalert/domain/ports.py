"""Ports: what the domain needs from the outside world. Adapters implement them."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, TypeAlias

import attrs

from stockalert.domain.commands import RequestKey
from stockalert.domain.errors import ErrorCode, error_from_reply
from stockalert.domain.events import Event
from stockalert.domain.model import (
    Email,
    FailedLogins,
    Notification,
    NotificationRecord,
    Quote,
    Side,
    SideState,
    Subscription,
    Ticker,
    TickerStatus,
    User,
)
from stockalert.domain.views import CollectionReport, SubscriptionView

# ----- values exchanged through the ports ---------------------------------------------------


@attrs.frozen
class StoredReply:
    """A command's reply as the request ledger keeps it, failures included."""

    fingerprint: str
    code: ErrorCode | None
    message: str
    field: str | None
    result: object
    created_at: datetime

    def replay(self) -> object:
        """Return the stored result, or raise the stored error."""
        if self.code is not None:
            raise error_from_reply(self.code, self.message, self.field)
        return self.result


@attrs.frozen
class UnknownTicker:
    """The price source says this symbol does not exist (the user's mistake, not an outage)."""

    ticker: Ticker


@attrs.frozen
class FetchFailed:
    """The price source could not answer for this ticker this time."""

    ticker: Ticker
    reason: str


PriceResult: TypeAlias = Quote | UnknownTicker | FetchFailed


class MailTemporaryError(Exception):
    """Delivery may succeed later (4xx, connection refused): keep the notification pending."""


class MailNotAttempted(MailTemporaryError):
    """The mailer did not try (it pauses after finding the server unreachable): the
    notification stays pending and this does not count as a delivery attempt."""


class MailPermanentError(Exception):
    """Delivery will never succeed (5xx): record the failure, do not retry."""


# ----- infrastructure ------------------------------------------------------------------------


class Clock(Protocol):
    """The current time; injected so that nothing in the domain reads the system clock."""

    def now(self) -> datetime:
        """Aware UTC datetime."""
        ...


class IdGenerator(Protocol):
    """New unique ids for users and subscriptions."""

    def new_id(self) -> str:
        """A fresh id, never returned before."""
        ...


class PasswordHasher(Protocol):
    """A slow, salted password hash."""

    def hash(self, password: str) -> str:
        """Hash to store."""
        ...

    def verify(self, password_hash: str, password: str) -> bool:
        """True when the password matches the stored hash."""
        ...


@attrs.frozen
class TokenClaims:
    """What a verified token says."""

    user_id: str
    issued_at: datetime
    session_version: int = 0  # the user's session version when it was issued


class TokenIssuer(Protocol):
    """Signs and verifies expiring bearer tokens."""

    def issue(self, user_id: str, now: datetime, session_version: int = 0) -> tuple[str, datetime]:
        """A token for the user (of their current session version) and when it expires."""
        ...

    def verify(self, token: str, now: datetime) -> TokenClaims:
        """The claims of a valid, unexpired token; raises Unauthenticated otherwise."""
        ...


# What sending one e-mail came to: None when the server accepted it.
MailOutcome: TypeAlias = "MailTemporaryError | MailPermanentError | None"


class Mailer(Protocol):
    """Sends notification e-mails; each Message-ID derives from the notification id."""

    def send_many(self, notifications: Sequence[Notification]) -> Iterator[MailOutcome]:
        """Send in order, yielding each outcome as soon as it is known, so the caller can
        record it before the next message goes out. Never raises for one message: a
        temporary failure (4xx, server unreachable) or a permanent one (5xx) is yielded.
        Messages after the point where the caller stops iterating are not sent."""
        ...


def send_each(
    send: Callable[[Notification], None], notifications: Sequence[Notification]
) -> Iterator[MailOutcome]:
    """`Mailer.send_many` for a mailer that sends one message at a time."""
    for notification in notifications:
        try:
            send(notification)
        except (MailTemporaryError, MailPermanentError) as err:
            yield err
        else:
            yield None


class EventPublisher(Protocol):
    """Hands events to other processes (Kafka in the distributed mode)."""

    def publish(self, event: Event) -> None:
        """Publish durably or raise."""
        ...


class PriceSource(Protocol):
    """Current quotes for a batch of tickers, with a result per ticker."""

    def fetch(self, tickers: Collection[Ticker]) -> Mapping[Ticker, PriceResult]:
        """One result per requested ticker."""
        ...


# ----- write model -------------------------------------------------------------------------


class UserRepository(Protocol):
    """Users by id and by e-mail."""

    def add(self, user: User) -> None: ...
    def get(self, user_id: str) -> User | None: ...
    def get_by_email(self, email: Email) -> User | None: ...
    def existing(self, user_ids: Collection[str]) -> set[str]:
        """Those of `user_ids` that are users (not deleted)."""
        ...

    def end_sessions(self, user_id: str) -> None:
        """Raise the user's session version by one: their tokens so far stop working."""
        ...

    def delete(self, user_id: str) -> None: ...


class LoginFailureRepository(Protocol):
    """Failed logins per throttle key (shared by every command-api instance)."""

    def get_many(self, keys: Collection[str], lock: bool = False) -> dict[str, FailedLogins]:
        """The counts of these keys; `lock`: held until the transaction ends (to update)."""
        ...

    def save(self, key: str, state: FailedLogins) -> None:
        """Insert or replace."""
        ...

    def clear(self, keys: Collection[str]) -> None: ...
    def forget_before(self, cutoff: datetime) -> int:
        """Drop keys whose last failure is older than `cutoff`; how many went."""
        ...


class SubscriptionRepository(Protocol):
    """Subscriptions; at most one per (user, ticker)."""

    def save(self, subscription: Subscription) -> None:
        """Insert or replace by subscription id."""
        ...

    def get(self, user_id: str, ticker: Ticker) -> Subscription | None: ...
    def for_user(self, user_id: str) -> list[Subscription]: ...
    def for_tickers(self, tickers: Collection[Ticker]) -> list[Subscription]:
        """The subscriptions of these tickers (what an alert-system instance owns)."""
        ...

    def tickers_in_use(self) -> set[Ticker]: ...
    def watched(self, tickers: Collection[Ticker]) -> set[Ticker]:
        """Those of `tickers` somebody watches (a few index probes, not every ticker)."""
        ...

    def ticker_count(self) -> int:
        """How many distinct tickers are watched."""
        ...

    def all(self) -> list[Subscription]: ...
    def delete(self, subscription_id: str) -> None: ...


class AlertStateRepository(Protocol):
    """Crossing state per subscription side, so that a restart does not re-fire."""

    def get(self, subscription_id: str, side: Side) -> SideState:
        """The stored state, or ARMED with episode 0 when none is stored."""
        ...

    def sides(self, subscription_id: str) -> tuple[SideState, SideState]:
        """The HIGH and LOW states (ARMED where none is stored), in one read."""
        ...

    def save(self, subscription_id: str, side: Side, state: SideState) -> None: ...
    def save_sides(self, subscription_id: str, high: SideState, low: SideState) -> None:
        """Both states of a subscription saved in this unit of work, in one write."""
        ...

    def save_many(self, states: Sequence[tuple[str, Side, SideState]]) -> None:
        """Save each (subscription, side, state); a subscription removed meanwhile is
        skipped (its states went with it)."""
        ...

    def all(self) -> dict[tuple[str, Side], SideState]: ...
    def for_tickers(self, tickers: Collection[Ticker]) -> dict[tuple[str, Side], SideState]:
        """The stored states of the subscriptions of these tickers."""
        ...

    def delete_for(self, subscription_id: str) -> None: ...


class AlertProgressRepository(Protocol):
    """Per ticker, the quote time the alert states were last evaluated against (the
    high-water mark). Written in the transaction that saves the states it produced, so that
    a reload never applies a quote at or before it a second time."""

    def get_many(self, tickers: Collection[Ticker]) -> dict[Ticker, datetime]:
        """The marks of those of `tickers` that have one."""
        ...

    def all(self) -> dict[Ticker, datetime]: ...
    def save(self, ticker: Ticker, applied_through: datetime) -> None: ...
    def save_many(self, marks: Mapping[Ticker, datetime]) -> None:
        """Save the mark of each ticker."""
        ...


class QuoteRepository(Protocol):
    """Collected quotes."""

    def latest(self, ticker: Ticker) -> Quote | None: ...
    def latest_many(self, tickers: Collection[Ticker]) -> dict[Ticker, Quote]:
        """`latest` of each of `tickers` that has a quote, in one read."""
        ...

    def latest_collected_at(self, ticker: Ticker) -> datetime | None:
        """When the newest new quote of the ticker was collected (freshness of the feed)."""
        ...

    def latest_collected_many(self, tickers: Collection[Ticker]) -> dict[Ticker, datetime]:
        """`latest_collected_at` of each of `tickers` that has a quote, in one read."""
        ...

    def latest_quotes(self) -> list[Quote]:
        """The newest stored quote of every ticker."""
        ...

    def newer_than(self, ticker: Ticker, after: datetime | None) -> list[Quote]:
        """Stored quotes of the ticker quoted after `after` (all when None), oldest first."""
        ...

    def add(self, quote: Quote, collected_at: datetime) -> None: ...

    def prune(self, older_than: datetime, keep_newest: int) -> int:
        """Drop quotes of tickers nobody follows, and of followed tickers those older than
        `older_than` that are not among the newest `keep_newest`; returns how many."""
        ...


class TickerStatusRepository(Protocol):
    """What the collector learnt about each ticker, for users to see."""

    def save(
        self, ticker: Ticker, status: TickerStatus, reason: str | None, at: datetime
    ) -> None: ...

    def get(self, ticker: Ticker) -> TickerStatus | None: ...
    def get_many(self, tickers: Collection[Ticker]) -> dict[Ticker, TickerStatus]:
        """The statuses of those of `tickers` that have one, in one read."""
        ...


class NotificationLedger(Protocol):
    """Every notification ever raised, unique by notification id, with delivery status."""

    def get(self, notification_id: str) -> NotificationRecord | None: ...
    def get_many(self, notification_ids: Collection[str]) -> dict[str, NotificationRecord]:
        """The records of those of `notification_ids` that the ledger has, by id."""
        ...

    def add(self, record: NotificationRecord) -> None: ...
    def add_new(self, records: Sequence[NotificationRecord]) -> int:
        """Add those of `records` whose id is not in the ledger yet; returns how many."""
        ...

    def update(self, record: NotificationRecord) -> None:
        """Replace the record of that id; nothing when there is none (its user is gone)."""
        ...

    def delete(self, notification_id: str) -> None: ...
    def due_users(self, due_at: datetime, after: str | None, limit: int) -> list[str]:
        """Up to `limit` users with a PENDING notification due at `due_at` (its next attempt
        not later), in id order, from after the id `after` (None: from the first)."""
        ...

    def pending_of(self, user_id: str, limit: int) -> list[NotificationRecord]:
        """The user's first `limit` PENDING notifications, in the order they go out: by the
        time of their quote, then by ticker, then by id."""
        ...

    def pending_of_users(
        self, user_ids: Collection[str], limit: int
    ) -> dict[str, list[NotificationRecord]]:
        """`pending_of` for each of `user_ids` that has PENDING notifications, in one read."""
        ...

    def delete_for_user(self, user_id: str) -> None: ...


class RequestLedger(Protocol):
    """Replies of idempotent commands by (method, user, request id)."""

    def claim(self, key: RequestKey) -> StoredReply | None:
        """The stored reply of `key`, or None after reserving the key for this transaction.

        A concurrent transaction claiming the same key waits until this one ends and then
        sees its reply: the ledger is what makes concurrent duplicates execute once.
        """
        ...

    def complete(self, key: RequestKey, reply: StoredReply) -> None:
        """Store the reply of a claimed key (in the same transaction as the effect)."""
        ...

    def forget_subject(self, subject: str) -> None:
        """Drop the stored replies of one user (their data goes with them)."""
        ...

    def expire_before(self, cutoff: datetime) -> int:
        """Drop replies stored before `cutoff`; returns how many."""
        ...


class UnitOfWork(Protocol):
    """One atomic transaction over the write model; events are released only on commit.

    The repositories are read-only members, so that an implementation may hold its own
    repository types (a settable protocol attribute would have to be exactly the port type).
    """

    @property
    def users(self) -> UserRepository: ...
    @property
    def subscriptions(self) -> SubscriptionRepository: ...
    @property
    def alert_states(self) -> AlertStateRepository: ...
    @property
    def alert_progress(self) -> AlertProgressRepository: ...
    @property
    def quotes(self) -> QuoteRepository: ...
    @property
    def tickers(self) -> TickerStatusRepository: ...
    @property
    def notifications(self) -> NotificationLedger: ...
    @property
    def requests(self) -> RequestLedger: ...
    @property
    def login_failures(self) -> LoginFailureRepository: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back whatever was not committed."""
        ...

    def commit(self) -> None: ...
    def rollback(self) -> None: ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested scope rolled back on its own if it raises (effects and events)."""
        ...

    def record(self, event: Event) -> None:
        """An event to release after the commit."""
        ...

    def collect_events(self) -> Iterator[Event]:
        """Events of committed work, each once."""
        ...


# ----- read model ---------------------------------------------------------------------------


class ReadModel(Protocol):
    """Read-only views for queries; may be served by a replica. The views of one user are
    None when there is no such user (one read answers both questions)."""

    def user_exists(self, user_id: str) -> bool: ...
    def session_version(self, user_id: str) -> int | None:
        """The user's current session version; None when there is no such user."""
        ...

    def watched_tickers(self, user_id: str) -> list[Ticker] | None: ...
    def latest_of_watched(
        self, user_id: str, ticker: Ticker | None = None
    ) -> dict[Ticker, Quote | None] | None:
        """Each ticker the user watches (only `ticker`, if they watch it, when given), with
        its newest stored quote (None: none yet)."""
        ...

    def subscriptions_of(self, user_id: str) -> list[SubscriptionView] | None: ...
    def newest_prices(self, ticker: Ticker, count: int) -> Sequence[float]: ...
    def notifications_of(self, user_id: str, limit: int) -> list[NotificationRecord]: ...
    def pending_notifications(self) -> int:
        """PENDING rows of the notification ledger, every user's (e-mails still to send)."""
        ...


# ----- telemetry ----------------------------------------------------------------------------


class Telemetry(Protocol):
    """What the domain reports for operators (an adapter exports it as metrics). Each call is
    cheap and never fails the work it reports on."""

    def collected(self, report: CollectionReport, seconds: float) -> None:
        """A collection cycle ended: its tickers, quotes stored and failures, its duration."""
        ...

    def quotes_applied(self, count: int) -> None:
        """Quotes evaluated by the alert engine (one transaction)."""
        ...

    def alert_raised(self, notification: Notification) -> None:
        """A crossing or reminder was committed as a PENDING notification."""
        ...

    def delivery_attempted(self, record: NotificationRecord, at: datetime) -> None:
        """A delivery's outcome, as stored: SENT (at `at`), still PENDING (retried later)
        or FAILED."""
        ...

    def request_replayed(self, method: str) -> None:
        """A command's request id was seen before: its stored reply was returned."""
        ...


class NoTelemetry:
    """Telemetry that reports nowhere (the library's default)."""

    def collected(self, report: CollectionReport, seconds: float) -> None:
        pass

    def quotes_applied(self, count: int) -> None:
        pass

    def alert_raised(self, notification: Notification) -> None:
        pass

    def delivery_attempted(self, record: NotificationRecord, at: datetime) -> None:
        pass

    def request_replayed(self, method: str) -> None:
        pass


NO_TELEMETRY: Telemetry = NoTelemetry()

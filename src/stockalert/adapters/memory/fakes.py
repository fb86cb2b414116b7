"""Fakes of the infrastructure ports for tests and the library: a clock that moves when
told, readable ids, a fast (insecure) hasher, a recording mailer, a fixed price table."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import attrs

from stockalert.domain.events import Event
from stockalert.domain.model import Notification, Quote, Ticker
from stockalert.domain.ports import (
    MailOutcome,
    MailPermanentError,
    MailTemporaryError,
    PriceResult,
    UnknownTicker,
    send_each,
)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class SequentialIds:
    """Readable, deterministic ids: u1, u2, ..."""

    def __init__(self, prefix: str = "id") -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._counter)}"


class InsecureFastHasher:
    """Salt-free HMAC of the password: fast for unit tests, never for real use."""

    def hash(self, password: str) -> str:
        return "test$" + hashlib.sha256(password.encode()).hexdigest()

    def verify(self, password_hash: str, password: str) -> bool:
        return hmac.compare_digest(password_hash, self.hash(password))


@attrs.define
class MemoryMailer:
    """Records what it 'sends'; can be told to fail the next sends."""

    sent: list[Notification] = attrs.Factory(list)
    failures: list[Exception] = attrs.Factory(list)

    def fail_next(self, *errors: Exception) -> None:
        """Raise these (in order) on the next sends instead of delivering."""
        self.failures.extend(errors)

    def send(self, notification: Notification) -> None:
        if self.failures:
            error = self.failures.pop(0)
            if not isinstance(error, MailTemporaryError | MailPermanentError):
                raise TypeError("a mailer fails with MailTemporaryError or MailPermanentError")
            raise error
        self.sent.append(notification)

    def send_many(self, notifications: Sequence[Notification]) -> Iterator[MailOutcome]:
        return send_each(self.send, notifications)


@attrs.define
class MemoryEventLog:
    """An EventPublisher that keeps what it is given."""

    events: list[Event] = attrs.Factory(list)

    def publish(self, event: Event) -> None:
        self.events.append(event)


@attrs.define
class StaticPriceSource:
    """A PriceSource answering from a fixed table; unlisted tickers are unknown."""

    quotes: dict[Ticker, Quote] = attrs.Factory(dict)

    def fetch(self, tickers: Collection[Ticker]) -> Mapping[Ticker, PriceResult]:
        return {t: self.quotes.get(t) or UnknownTicker(t) for t in tickers}

"""The small adapters and fakes behave as their ports promise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stockalert.adapters.memory.fakes import (
    InsecureFastHasher,
    ManualClock,
    MemoryEventLog,
    MemoryMailer,
    SequentialIds,
    StaticPriceSource,
)
from stockalert.adapters.passwords import Argon2Hasher
from stockalert.adapters.system import SystemClock, UuidIds
from stockalert.domain.events import UserDeleted
from stockalert.domain.model import Email, Notification, NotificationKind, Quote, Side, Ticker
from stockalert.domain.ports import MailTemporaryError, UnknownTicker

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def notification(notification_id: str) -> Notification:
    return Notification(
        notification_id=notification_id,
        subscription_id="s1",
        user_id="u1",
        email=Email("ann@example.com"),
        ticker=Ticker("AAPL"),
        side=Side.HIGH,
        kind=NotificationKind.CROSSING,
        price=101.0,
        threshold=100.0,
        quoted_at=T0,
        episode=1,
    )


def test_static_price_source_answers_every_ticker_asked() -> None:
    """Known tickers get their quote, others are reported unknown (not an error)."""
    aapl = Quote(Ticker("AAPL"), 190.0, T0)
    source = StaticPriceSource({Ticker("AAPL"): aapl})
    assert source.fetch([Ticker("AAPL"), Ticker("NOPE")]) == {
        Ticker("AAPL"): aapl,
        Ticker("NOPE"): UnknownTicker(Ticker("NOPE")),
    }


def test_quote_refuses_a_naive_timestamp() -> None:
    """A quote time without a zone would be read in local time; it is rejected."""
    with pytest.raises(ValueError, match="timezone-aware"):
        Quote(Ticker("AAPL"), 1.0, datetime(2026, 1, 5, 14, 30))  # noqa: DTZ001 - naive on purpose


def test_event_log_keeps_published_events_in_order() -> None:
    """The in-memory EventPublisher records what it is given."""
    log = MemoryEventLog()
    log.publish(UserDeleted("u1"))
    log.publish(UserDeleted("u2"))
    assert log.events == [UserDeleted("u1"), UserDeleted("u2")]


def test_memory_mailer_fails_as_told_then_delivers() -> None:
    """fail_next() makes the next sends raise, in order; then sends succeed again."""
    mailer = MemoryMailer()
    first, second = notification("s1:HIGH:1"), notification("s1:HIGH:2")
    mailer.fail_next(MailTemporaryError("421"))
    with pytest.raises(MailTemporaryError):
        mailer.send(first)
    mailer.send(second)
    assert mailer.sent == [second]


def test_manual_clock_moves_only_when_advanced() -> None:
    """Tests control time exactly."""
    clock = ManualClock(T0)
    assert clock.now() == T0
    clock.advance(90)
    assert clock.now() == T0 + timedelta(seconds=90)


def test_ids_are_unique() -> None:
    """Both id generators never repeat themselves."""
    for ids in (SequentialIds("u"), UuidIds()):
        assert len({ids.new_id() for _ in range(1000)}) == 1000


def test_system_clock_is_aware_utc() -> None:
    """The system clock answers in UTC, never naive."""
    assert SystemClock().now().utcoffset() == timedelta(0)


@pytest.mark.parametrize("hasher", [Argon2Hasher(), InsecureFastHasher()], ids=["argon2", "fake"])
def test_password_hashers_verify_only_the_right_password(
    hasher: Argon2Hasher | InsecureFastHasher,
) -> None:
    """A hash verifies its password, not another one, and never stores it in clear."""
    stored = hasher.hash("correct horse battery")
    assert "correct horse battery" not in stored
    assert hasher.verify(stored, "correct horse battery")
    assert not hasher.verify(stored, "wrong horse battery")
    assert not hasher.verify("not-a-hash", "correct horse battery")


def test_argon2_hashes_are_salted() -> None:
    """The same password hashes differently each time (Argon2id with a random salt)."""
    hasher = Argon2Hasher()
    first, second = hasher.hash("password123"), hasher.hash("password123")
    assert first != second
    assert first.startswith("$argon2id$")

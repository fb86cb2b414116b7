"""The .eml outbox mailer, the alert message, JWT tokens and the replay price source."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import jwt
import pytest

from stockalert.adapters.mail.eml_files import OutboxMailer, file_name
from stockalert.adapters.mail.message import BOUNDARY, build_message, message_id, to_bytes
from stockalert.adapters.replay import ReplayPriceSource
from stockalert.adapters.tokens import JwtTokens
from stockalert.domain.errors import Unauthenticated
from stockalert.domain.model import Email, Notification, NotificationKind, Quote, Side, Ticker
from stockalert.domain.ports import FetchFailed, MailTemporaryError, UnknownTicker

T0 = datetime(2026, 1, 5, 14, 36, tzinfo=UTC)
SECRET = "a-secret-for-tests-that-is-long-enough-1234"


def alert(
    side: Side = Side.HIGH, kind: NotificationKind = NotificationKind.CROSSING
) -> Notification:
    return Notification(
        notification_id="sub1:HIGH:2" if kind is NotificationKind.CROSSING else "sub1:HIGH:2:r1",
        subscription_id="sub1",
        user_id="u1",
        email=Email("ann@example.com"),
        ticker=Ticker("AAPL"),
        side=side,
        kind=kind,
        price=190.55,
        threshold=190.0,
        quoted_at=T0,
        episode=2,
    )


def parse(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_alert_message_names_ticker_side_price_and_threshold() -> None:
    """Subject and body say what crossed; headers make the message traceable and automatic."""
    message = parse(build_message(alert()).as_bytes())
    assert message["To"] == "ann@example.com"
    assert message["Subject"] == "AAPL HIGH: 190.55 is above your threshold 190.00"
    assert message["Message-ID"] == "<sub1.HIGH.2@stockalert.invalid>"
    assert message["Auto-Submitted"] == "auto-generated"
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    body = plain.get_content()
    assert "Ticker:    AAPL" in body
    assert "Price:     190.5500" in body
    assert "Threshold: 190.0000 (HIGH: alert when the price is above it)" in body


def test_low_side_and_reminder_read_differently() -> None:
    """A LOW alert says 'below'; a reminder says so in the subject."""
    low = parse(build_message(alert(Side.LOW)).as_bytes())
    reminder = parse(build_message(alert(kind=NotificationKind.REMINDER)).as_bytes())
    assert "is below your threshold" in low["Subject"]
    assert reminder["Subject"].startswith("AAPL HIGH (reminder):")
    assert (
        message_id(alert(kind=NotificationKind.REMINDER)) == "<sub1.HIGH.2.r1@stockalert.invalid>"
    )


def test_the_same_notification_is_always_the_same_bytes() -> None:
    """Fixed MIME boundary and cached headers: a resent alert is byte-identical, and what
    went out for one alert never leaks into the next one's shared headers."""
    first = to_bytes(build_message(alert()))
    other = to_bytes(build_message(alert(Side.LOW)))
    assert to_bytes(build_message(alert())) == first
    assert b"\r\n" in first
    assert b"\n" not in first.replace(b"\r\n", b"")
    assert parse(other)["Subject"].startswith("AAPL LOW")
    assert parse(first)["Subject"].startswith("AAPL HIGH")
    assert parse(first).get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parse(first).iter_parts()] == ["text/plain", "text/html"]


def test_a_message_containing_the_mime_boundary_is_refused() -> None:
    """A part that contained the fixed boundary would split the message: refused instead."""
    crafted = attrs.evolve(alert(), notification_id=f"sub1:HIGH:2{BOUNDARY}")
    with pytest.raises(ValueError, match="boundary"):
        build_message(crafted)


def test_outbox_writes_one_file_per_notification_even_when_sent_twice(tmp_path: Path) -> None:
    """A redelivered notification leaves exactly one .eml file, unchanged."""
    outbox = tmp_path / "outbox"
    mailer = OutboxMailer(outbox)
    mailer.send(alert())
    first = (outbox / "sub1_HIGH_2.eml").read_bytes()
    mailer.send(alert())
    assert [p.name for p in outbox.iterdir()] == ["sub1_HIGH_2.eml"]
    assert (outbox / "sub1_HIGH_2.eml").read_bytes() == first
    assert file_name("a:b:c") == "a_b_c.eml"


def test_outbox_that_cannot_be_written_is_a_temporary_failure(tmp_path: Path) -> None:
    """A file in the way of the outbox folder keeps the notification pending, not lost."""
    blocked = tmp_path / "outbox"
    blocked.write_text("not a folder")
    with pytest.raises(MailTemporaryError, match="cannot write"):
        OutboxMailer(blocked).send(alert())


def test_tokens_carry_the_user_and_login_time_until_they_expire() -> None:
    """A token verifies to its user until its expiry, measured on the injected clock."""
    tokens = JwtTokens(SECRET, ttl=timedelta(hours=1))
    token, expires = tokens.issue("u1", T0)
    assert expires == T0 + timedelta(hours=1)
    claims = tokens.verify(token, T0 + timedelta(minutes=59))
    assert (claims.user_id, claims.issued_at) == ("u1", T0)
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(token, expires)


def test_a_verified_token_is_remembered_but_a_tampered_copy_is_not() -> None:
    """Verification is cached per exact token: its expiry is still checked on every call,
    and a copy with another payload or signature is checked (and refused) on its own."""
    tokens = JwtTokens(SECRET, ttl=timedelta(hours=1))
    token, expires = tokens.issue("u1", T0)
    assert tokens.verify(token, T0).user_id == "u1"
    header, payload, signature = token.split(".")
    other_payload = jwt.encode(
        {"sub": "u2", "iss": "stockalert", "iat": T0, "exp": expires}, "x" * 32, "HS256"
    ).split(".")[1]
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    for forged in (f"{header}.{other_payload}.{signature}", f"{header}.{payload}.{flipped}"):
        with pytest.raises(Unauthenticated, match="invalid token"):
            tokens.verify(forged, T0)
    assert tokens.verify(token, T0 + timedelta(minutes=30)).user_id == "u1"
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(token, expires)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        JwtTokens("another-secret-of-sufficient-length-00000").issue("u1", T0)[0],
        jwt.encode({"sub": "u1", "iss": "stockalert"}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "u1", "iat": T0, "exp": T0 + timedelta(hours=1)}, SECRET, "HS256"),
        jwt.encode(
            {"sub": "u1", "iss": "stockalert", "iat": T0, "exp": T0 + timedelta(hours=1)},
            key="",  # alg none takes no key (PyJWT reads "" as none)
            algorithm="none",
        ),
    ],
    ids=["empty", "garbage", "other-secret", "no-expiry", "no-issuer", "alg-none"],
)
def test_forged_or_incomplete_tokens_are_rejected(token: str) -> None:
    """Only complete HS256 tokens signed with our secret are accepted."""
    with pytest.raises(Unauthenticated, match="invalid token"):
        JwtTokens(SECRET).verify(token, T0)


def test_a_short_token_secret_is_refused() -> None:
    """HS256 with a guessable key would make every token forgeable."""
    with pytest.raises(ValueError, match="at least 32 bytes"):
        JwtTokens("short")


def test_replay_source_applies_one_timestamp_per_fetch(tmp_path: Path) -> None:
    """Each fetch moves one timestamp on; unknown and not-yet-quoted tickers are told apart."""
    path = tmp_path / "p.csv"
    path.write_text(
        "timestamp,ticker,price\n"
        "2026-01-05T14:30:00Z,AAPL,1\n"
        "2026-01-05T14:33:00Z,AAPL,2\n"
        "2026-01-05T14:33:00Z,MSFT,3\n"
    )
    source = ReplayPriceSource(path)
    aapl, msft, nope = Ticker("AAPL"), Ticker("MSFT"), Ticker("NOPE")
    first = source.fetch([aapl, msft, nope])
    assert first[aapl] == Quote(aapl, 1.0, datetime(2026, 1, 5, 14, 30, tzinfo=UTC))
    assert isinstance(first[msft], FetchFailed)
    assert first[nope] == UnknownTicker(nope)
    second = source.fetch([aapl, msft])
    assert [q.price for q in (second[aapl], second[msft]) if isinstance(q, Quote)] == [2.0, 3.0]
    assert source.exhausted
    assert source.fetch([aapl]) == {aapl: second[aapl]}  # no new quotes after the last one

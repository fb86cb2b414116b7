"""Events as Kafka messages: UTF-8 JSON with an explicit type and schema version.

    {"type": "PriceUpdated", "version": 1, "ticker": "AAPL", "price": 191.3,
     "quoted_at": "2026-01-05T14:48:00Z", "correlation_id": "9f2c...e1"}

| event | topic | key | type, version |
|---|---|---|---|
| `PriceUpdated` | to-alert-system | ticker | PriceUpdated 1 |
| `SubscriptionSet` | subscription-changes | subscription id | SubscriptionSet 1 |
| `SubscriptionRemoved` | subscription-changes | subscription id | SubscriptionRemoved 1 |
| `UserDeleted` | subscription-changes | `user:` + user id | UserDeleted 1 |
| `AlertRaised` | to-notifier | user id | Notification 1 |

(subscription-changes is `stockalert.subscription-changes`, compacted.)

Decoding is strict: a payload that is not JSON, lacks a field, has a field of the wrong type,
an unknown type or an unknown version raises CodecError naming what is wrong, and the
consumer sends the message to the dead-letter topic. A new version of a schema gets a new
decoder here, next to the old one, so that messages written by the previous release still
read while both run. An added optional field keeps its version instead: a reader ignores the
fields it does not know, so the previous release reads the new messages and the new release
the old ones (that is how `correlation_id` joined PriceUpdated 1 and Notification 1; absent
or null, it decodes as None).

`correlation_id` is the id the collector gave the quote; it travels in PriceUpdated, then in
every Notification that quote raised, then in the e-mail's headers.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from stockalert.adapters.kafka.topics import Topics
from stockalert.adapters.outbox import OutboxMessage as Message
from stockalert.domain.errors import DomainError
from stockalert.domain.events import (
    AlertRaised,
    Event,
    PriceUpdated,
    SubscriptionRemoved,
    SubscriptionSet,
    UserDeleted,
)
from stockalert.domain.model import (
    Email,
    Notification,
    NotificationKind,
    Quote,
    Side,
    SideState,
    SideStatus,
    Subscription,
    Ticker,
    parse_correlation_id,
    parse_price,
)

MAX_MESSAGE_BYTES = 64 * 1024  # far above any event; a larger payload is not ours


class CodecError(ValueError):
    """A message that is not a known event; the message says what is wrong, `kind` which of
    a few ways (a bounded metric label): empty, too_large, not_json, unknown_type,
    unknown_version, invalid_field."""

    def __init__(self, message: str, kind: str = "invalid_field") -> None:
        super().__init__(message)
        self.kind = kind


# The events other processes must hear of: those `encode` turns into messages (and so those a
# commit writes to the outbox, and those that wake the outbox relay).
PUBLISHED: tuple[type[Event], ...] = (
    PriceUpdated,
    SubscriptionSet,
    SubscriptionRemoved,
    UserDeleted,
    AlertRaised,
)


# ----- encoding ----------------------------------------------------------------------------------


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _plain(instance: object, field: object, value: object) -> object:
    """JSON-ready values: e-mails and tickers as text, enums as their value, times as
    ISO-8601 UTC."""
    if isinstance(value, Email | Ticker):
        return value.value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return _time(value)
    return value


def _fields(value: SideState | Subscription | Notification) -> dict[str, Any]:
    """Every field of a value object, JSON-ready (the schema is the class's fields)."""
    return attrs.asdict(value, recurse=False, value_serializer=_plain)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def encode(event: Event, topics: Topics) -> Message | None:
    """The message of an event other processes must hear of; None for one they need not."""
    if isinstance(event, PriceUpdated):
        quote = event.quote
        body = {
            "ticker": quote.ticker.value,
            "price": quote.price,
            "quoted_at": _time(quote.quoted_at),
            "correlation_id": quote.correlation_id,
        }
        return Message(
            topics.to_alert_system,
            quote.ticker.value.encode(),
            _json({"type": "PriceUpdated", "version": 1, **body}),
        )
    if isinstance(event, SubscriptionSet):
        sid = event.subscription.subscription_id
        body = {
            "subscription": _fields(event.subscription),
            "high": _fields(event.high),
            "low": _fields(event.low),
        }
        return Message(
            topics.subscription_changes,
            sid.encode(),
            _json({"type": "SubscriptionSet", "version": 1, **body}),
        )
    if isinstance(event, SubscriptionRemoved):
        body = {"subscription_id": event.subscription_id, "ticker": event.ticker.value}
        return Message(
            topics.subscription_changes,
            event.subscription_id.encode(),
            _json({"type": "SubscriptionRemoved", "version": 1, **body}),
        )
    if isinstance(event, UserDeleted):
        return Message(
            topics.subscription_changes,
            f"user:{event.user_id}".encode(),
            _json({"type": "UserDeleted", "version": 1, "user_id": event.user_id}),
        )
    if isinstance(event, AlertRaised):
        return Message(
            topics.to_notifier,
            event.notification.user_id.encode(),
            _json({"type": "Notification", "version": 1, **_fields(event.notification)}),
        )
    return None


# ----- decoding ----------------------------------------------------------------------------------


class _Fields:
    """Typed access to one JSON object; every failure names the field."""

    def __init__(self, body: Mapping[str, Any], where: str = "") -> None:
        self._body = body
        self._where = where

    def _get(self, name: str) -> Any:
        if name not in self._body:
            raise CodecError(f"{self._where}{name}: missing")
        return self._body[name]

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str) or not value:
            raise CodecError(f"{self._where}{name}: expected a non-empty string, got {value!r:.40}")
        return value

    def number(self, name: str, optional: bool = False) -> float | None:
        value = self._get(name) if not optional else self._body.get(name)
        if value is None and optional:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise CodecError(f"{self._where}{name}: expected a finite number, got {value!r:.40}")
        return float(value)

    def required_number(self, name: str) -> float:
        value = self.number(name)
        assert value is not None
        return value

    def integer(self, name: str) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CodecError(
                f"{self._where}{name}: expected a whole number >= 0, got {value!r:.40}"
            )
        return value

    def time(self, name: str) -> datetime:
        text = self.text(name)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise CodecError(f"{self._where}{name}: {text!r:.40} is not an ISO-8601 time") from None
        if moment.tzinfo is None:
            raise CodecError(f"{self._where}{name}: {text!r:.40} has no UTC offset")
        return moment.astimezone(UTC)

    def correlation_id(self) -> str | None:
        """The optional `correlation_id` (absent or null: None); a present one must be
        valid, since it goes into log lines and e-mail headers."""
        value = self._body.get("correlation_id")
        if value is None:
            return None
        if not isinstance(value, str):
            raise CodecError(f"{self._where}correlation_id: expected a string, got {value!r:.40}")
        checked: str = _domain(lambda: parse_correlation_id(value, f"{self._where}correlation_id"))
        return checked

    def choice(self, name: str, allowed: Callable[[str], Any]) -> Any:
        text = self.text(name)
        try:
            return allowed(text)
        except ValueError:
            raise CodecError(f"{self._where}{name}: unknown value {text!r:.40}") from None

    def object(self, name: str) -> _Fields:
        value = self._get(name)
        if not isinstance(value, dict):
            raise CodecError(f"{self._where}{name}: expected an object")
        return _Fields(value, f"{self._where}{name}.")


def _domain(build: Callable[[], Any]) -> Any:
    """Domain validation (ticker syntax, positive prices, e-mail syntax) as CodecError."""
    try:
        return build()
    except DomainError as err:
        raise CodecError(err.message) from None


def _price_updated(f: _Fields) -> Event:
    ticker = _domain(lambda: Ticker.parse(f.text("ticker")))
    price = _domain(lambda: parse_price(f.required_number("price"), "price"))
    quoted_at = f.time("quoted_at")
    return PriceUpdated(Quote(ticker, price, quoted_at, correlation_id=f.correlation_id()))


def _side_state(f: _Fields) -> SideState:
    return SideState(
        status=f.choice("status", SideStatus),
        episode=f.integer("episode"),
        fired_at=f.number("fired_at", optional=True),
        reminders=f.integer("reminders"),
        next_reminder_at=f.number("next_reminder_at", optional=True),
    )


def _subscription_set(f: _Fields) -> Event:
    s = f.object("subscription")
    sub = Subscription(
        subscription_id=s.text("subscription_id"),
        user_id=s.text("user_id"),
        email=_domain(lambda: Email.parse(s.text("email"), "subscription.email")),
        ticker=_domain(lambda: Ticker.parse(s.text("ticker"), "subscription.ticker")),
        high_value=s.number("high_value", optional=True),
        low_value=s.number("low_value", optional=True),
        rearm_percent=s.required_number("rearm_percent"),
        cooldown_s=s.number("cooldown_s", optional=True),
        remind_every_s=s.number("remind_every_s", optional=True),
    )
    return SubscriptionSet(sub, _side_state(f.object("high")), _side_state(f.object("low")))


def _subscription_removed(f: _Fields) -> Event:
    ticker = _domain(lambda: Ticker.parse(f.text("ticker")))
    return SubscriptionRemoved(f.text("subscription_id"), ticker)


def _user_deleted(f: _Fields) -> Event:
    return UserDeleted(f.text("user_id"))


def _notification_v1(f: _Fields) -> Event:
    return AlertRaised(
        Notification(
            notification_id=f.text("notification_id"),
            subscription_id=f.text("subscription_id"),
            user_id=f.text("user_id"),
            email=_domain(lambda: Email.parse(f.text("email"))),
            ticker=_domain(lambda: Ticker.parse(f.text("ticker"))),
            side=f.choice("side", Side),
            kind=f.choice("kind", NotificationKind),
            price=f.required_number("price"),
            threshold=f.required_number("threshold"),
            quoted_at=f.time("quoted_at"),
            episode=f.integer("episode"),
            correlation_id=f.correlation_id(),
        )
    )


DECODERS: dict[tuple[str, int], Callable[[_Fields], Event]] = {
    ("PriceUpdated", 1): _price_updated,
    ("SubscriptionSet", 1): _subscription_set,
    ("SubscriptionRemoved", 1): _subscription_removed,
    ("UserDeleted", 1): _user_deleted,
    ("Notification", 1): _notification_v1,
}


def decode(value: bytes | None) -> Event:
    """The event a message carries; CodecError says why it is not one."""
    if value is None:
        raise CodecError("empty message (a tombstone?)", "empty")
    if len(value) > MAX_MESSAGE_BYTES:
        raise CodecError(
            f"message of {len(value)} bytes, more than {MAX_MESSAGE_BYTES}", "too_large"
        )
    try:
        body = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CodecError(f"not UTF-8 JSON: {str(err)[:80]}", "not_json") from None
    if not isinstance(body, dict):
        raise CodecError("not a JSON object", "not_json")
    fields = _Fields(body)
    kind = fields.text("type")
    version = fields.integer("version")
    decoder = DECODERS.get((kind, version))
    if decoder is None:
        known = sorted(v for k, v in DECODERS if k == kind)
        if not known:
            raise CodecError(f"type: unknown event type {kind!r:.40}", "unknown_type")
        raise CodecError(
            f"version: {kind} version {version} is not known (known: {known})", "unknown_version"
        )
    try:
        return decoder(fields)
    except (TypeError, ValueError) as err:  # e.g. a domain value object's own check
        if isinstance(err, CodecError):
            raise
        raise CodecError(f"{kind}: {str(err)[:120]}") from None

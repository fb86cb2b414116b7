"""Value objects of the domain: who watches what, at which thresholds, and what was sent."""

from __future__ import annotations

import enum
import math
import re
import zlib
from datetime import datetime, timedelta

import attrs

from stockalert.domain.errors import InvalidArgument, PermissionDenied

DEFAULT_REARM_PERCENT = 1.0
MAX_REARM_PERCENT = 50.0
MAX_PERIOD_S = 366 * 24 * 3600.0
MIN_REMIND_EVERY_S = 1.0
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
MAX_REQUEST_ID_LENGTH = 128
# Deleting an account is irreversible: it needs a recent login, not just a valid token.
RECENT_LOGIN = timedelta(minutes=10)

# Practical address syntax: one @, no spaces or control characters (which also rules out
# header injection), a dotted domain with a 2+ letter top-level label.
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,63}$"
)
# Yahoo symbols: AAPL, BRK-B, 0700.HK, EURUSD=X, ^GSPC, BTC-USD.
_TICKER_RE = re.compile(r"^\^?[A-Z0-9][A-Z0-9.=-]{0,15}$")


def shown(raw: str, limit: int = 40) -> str:
    """User input quoted for an error message, cut short so a message stays small."""
    return repr(raw) if len(raw) <= limit else repr(raw[:limit]) + f"... ({len(raw)} characters)"


class Side(enum.StrEnum):
    """Which threshold of a subscription: HIGH fires above `high_value`, LOW below `low_value`."""

    HIGH = "HIGH"
    LOW = "LOW"


class SideStatus(enum.StrEnum):
    """State of one side's crossing state machine."""

    ARMED = "ARMED"
    FIRED = "FIRED"


class NotificationKind(enum.StrEnum):
    """A first notice of a crossing, or a reminder that the price is still beyond."""

    CROSSING = "CROSSING"
    REMINDER = "REMINDER"


class DeliveryStatus(enum.StrEnum):
    """Where a notification is in the notifier's ledger."""

    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"


class TickerStatus(enum.StrEnum):
    """What the system knows of a ticker's prices."""

    PENDING = "PENDING"  # no quote collected yet
    ACTIVE = "ACTIVE"
    UNKNOWN = "UNKNOWN"  # the price source does not know the symbol
    STALE = "STALE"  # no fresh quote for longer than the stale limit


def visible_ticker_status(marked: TickerStatus | None, has_quotes: bool) -> TickerStatus:
    """What users see: the collector's mark, else PENDING / ACTIVE by the quotes stored."""
    if marked is not None:
        return marked
    return TickerStatus.ACTIVE if has_quotes else TickerStatus.PENDING


@attrs.frozen(cache_hash=True)
class Email:
    """A syntactically valid e-mail address, lower-cased so that one mailbox is one user."""

    value: str

    @classmethod
    def parse(cls, raw: str, field: str = "email") -> Email:
        """Validate and normalise user input; the error names `field`."""
        text = raw.strip()
        if not text:
            raise InvalidArgument(field, "must not be empty")
        if len(text) > 254:
            raise InvalidArgument(field, "must be at most 254 characters")
        if not _EMAIL_RE.fullmatch(text):
            raise InvalidArgument(field, f"{shown(raw)} is not a valid e-mail address")
        return cls(text.lower())

    def __str__(self) -> str:
        return self.value


@attrs.frozen(cache_hash=True)
class Ticker:
    """A Yahoo Finance symbol, upper-cased."""

    value: str

    @classmethod
    def parse(cls, raw: str, field: str = "ticker") -> Ticker:
        """Validate and normalise user input; the error names `field`."""
        text = raw.strip().upper()
        if not text:
            raise InvalidArgument(field, "must not be empty")
        if len(text) > 17 or not _TICKER_RE.fullmatch(text):
            raise InvalidArgument(
                field,
                f"{shown(raw)} is not a ticker symbol (1-16 of A-Z 0-9 . = -, optional leading ^)",
            )
        return cls(text)

    def __str__(self) -> str:
        return self.value


def parse_price(value: float, field: str) -> float:
    """A finite, strictly positive price."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidArgument(field, f"must be a number, got {type(value).__name__}")
    price = float(value)
    if math.isnan(price):
        raise InvalidArgument(field, "must be a number, got NaN")
    if math.isinf(price):
        raise InvalidArgument(field, "must be finite")
    if price <= 0:
        raise InvalidArgument(field, f"must be greater than 0, got {price:g}")
    return price


def parse_bounded(value: float, field: str, *, low: float, high: float) -> float:
    """A finite number in [low, high]."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidArgument(field, f"must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidArgument(field, "must be a finite number")
    if not low <= number <= high:
        raise InvalidArgument(field, f"must be between {low:g} and {high:g}, got {number:g}")
    return number


def parse_request_id(raw: str) -> str:
    """A non-empty client-chosen idempotency key."""
    text = raw.strip()
    if not text:
        raise InvalidArgument("request_id", "must not be empty")
    if len(text) > MAX_REQUEST_ID_LENGTH:
        raise InvalidArgument("request_id", f"must be at most {MAX_REQUEST_ID_LENGTH} characters")
    return text


def require_recent_login(authenticated_at: datetime, now: datetime) -> None:
    """Destructive operations need a login younger than RECENT_LOGIN (re-authentication)."""
    if now - authenticated_at > RECENT_LOGIN:
        minutes = RECENT_LOGIN.total_seconds() / 60
        raise PermissionDenied(
            f"this operation needs a login less than {minutes:g} minutes old; log in again"
        )


def check_password(raw: str, field: str = "password") -> str:
    """A password long enough to be worth hashing."""
    if len(raw) < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(field, f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(raw) > MAX_PASSWORD_LENGTH:
        raise InvalidArgument(field, f"must be at most {MAX_PASSWORD_LENGTH} characters")
    return raw


@attrs.frozen
class User:
    """A registered user; the e-mail is the login and the notification address."""

    user_id: str
    email: Email
    password_hash: str
    created_at: datetime
    # Goes up at each logout: a token carries the version it was issued under and is
    # refused once it is not the user's current one.
    session_version: int = 0


@attrs.frozen
class Subscription:
    """One user watching one ticker, with optional thresholds and alerting options."""

    subscription_id: str
    user_id: str
    email: Email
    ticker: Ticker
    high_value: float | None = None
    low_value: float | None = None
    rearm_percent: float = DEFAULT_REARM_PERCENT
    cooldown_s: float | None = None
    remind_every_s: float | None = None

    def threshold(self, side: Side) -> float | None:
        """The threshold of `side`, or None when that side is not set."""
        return self.high_value if side is Side.HIGH else self.low_value


@attrs.frozen
class Quotas:
    """Limits that keep one user, or one request, from costing everyone else: subscriptions
    per user (and so per request), distinct tickers in the whole system (each one is fetched
    every collection cycle)."""

    subscriptions_per_user: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    tickers: int = attrs.field(default=5_000, validator=attrs.validators.ge(1))


@attrs.frozen
class ThrottleRule:
    """Failed logins counted under one key: the account from one client address
    (`account+peer`), one client address over all accounts (`peer`), or one account from
    everywhere (`account`). `free` failures cost nothing; each further one makes the key wait
    `base_delay_s`, doubling, at most `max_delay_s`."""

    scope: str = attrs.field(validator=attrs.validators.in_(("account+peer", "peer", "account")))
    free: int = attrs.field(validator=attrs.validators.ge(1))
    max_delay_s: float = attrs.field(validator=attrs.validators.gt(0))


@attrs.frozen
class LoginThrottle:
    """Brute-force protection. An attacker's guesses at one account from one address wait
    up to 15 minutes, but cannot lock the user out from their own address; spraying many
    accounts from one address is slowed the same way; many addresses at one account (a
    botnet) make everyone wait at most 30 s per attempt. Failures are forgotten `window_s`
    after the last one, and a successful login clears its account's counts."""

    rules: tuple[ThrottleRule, ...] = (
        ThrottleRule("account+peer", free=5, max_delay_s=900.0),
        ThrottleRule("peer", free=50, max_delay_s=900.0),
        ThrottleRule("account", free=20, max_delay_s=30.0),
    )
    base_delay_s: float = 1.0
    window_s: float = 900.0

    def delay_s(self, rule: ThrottleRule, failures: int) -> float:
        """How long a key waits after its `failures`-th failure."""
        if failures <= rule.free:
            return 0.0
        return min(rule.max_delay_s, self.base_delay_s * 2.0 ** min(failures - rule.free - 1, 40))


@attrs.frozen
class FailedLogins:
    """The failed logins counted under one throttle key."""

    failures: int
    last_failure_at: datetime
    blocked_until: datetime | None = None


CORRELATION_ID_LENGTH = 64
_CORRELATION_ID_RE = re.compile(rf"^[A-Za-z0-9_-]{{1,{CORRELATION_ID_LENGTH}}}\Z")


def parse_correlation_id(text: str, field: str = "correlation_id") -> str:
    """A correlation id as it may appear in a log line, a header and a Message-ID's local
    part: 1 to 64 letters, digits, `_` or `-` (a uuid's hex, a W3C trace id)."""
    if not _CORRELATION_ID_RE.match(text):
        raise InvalidArgument(
            field, f"must be 1 to {CORRELATION_ID_LENGTH} letters, digits, '_' or '-'"
        )
    return text


@attrs.frozen
class Quote:
    """A price of a ticker at the time the exchange quoted it (not when we fetched it).

    `correlation_id` is given to a quote when it is stored (None before: a fetched quote) and
    follows it into every notification it raises, every log line about it and the e-mail;
    it is tracing metadata, not part of the value (equal quotes may differ in it)."""

    ticker: Ticker
    price: float = attrs.field(converter=float)
    quoted_at: datetime = attrs.field()
    correlation_id: str | None = attrs.field(default=None, eq=False, kw_only=True)

    @quoted_at.validator
    def _aware(self, _: attrs.Attribute[datetime], value: datetime) -> None:
        # A naive time would be read in the machine's zone: refuse it at the source.
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("quoted_at must be timezone-aware")

    @property
    def timestamp(self) -> float:
        """Quote time as POSIX seconds, the unit the alert engine works in."""
        return self.quoted_at.timestamp()


@attrs.frozen
class SideState:
    """Persistable state of one side of a subscription.

    `episode` counts crossings over the subscription's life and never goes back, so that
    notification ids stay unique even when a threshold is changed and crossed again.
    """

    status: SideStatus = SideStatus.ARMED
    episode: int = 0
    fired_at: float | None = None
    reminders: int = 0
    next_reminder_at: float | None = None


ARMED = SideState()


def notification_id(subscription_id: str, side: Side, episode: int, reminder: int = 0) -> str:
    """Deterministic identity of a notification: same crossing, same id, on any replica."""
    base = f"{subscription_id}:{side.value}:{episode}"
    return base if reminder == 0 else f"{base}:r{reminder}"


@attrs.frozen
class Notification:
    """An alert to send: a side of a subscription crossed (or is still beyond) its threshold."""

    notification_id: str
    subscription_id: str
    user_id: str
    email: Email
    ticker: Ticker
    side: Side
    kind: NotificationKind
    price: float
    threshold: float
    quoted_at: datetime
    episode: int
    # The correlation id of the quote that raised it (None: raised before ids existed).
    correlation_id: str | None = attrs.field(default=None, eq=False, kw_only=True)


@attrs.frozen
class NotificationRecord:
    """A notification as the notifier's ledger knows it, with its delivery status."""

    notification: Notification
    status: DeliveryStatus
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None  # PENDING only; None: due now


@attrs.frozen
class RetryPolicy:
    """When a PENDING notification is tried again: exponential backoff, capped, with a
    jitter that spreads the retries of many notifications (an outage leaves many pending)
    yet is deterministic (a hash of the notification id and attempt), so tests can predict it.
    """

    base_s: float = 30.0
    max_s: float = 900.0

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.base_s <= self.max_s:
            raise ValueError("retry delays need 0 <= base_s <= max_s")

    def delay_s(self, notification_id: str, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt: base * 2^(attempts-1),
        times a factor in [0.5, 1.5), never above max_s."""
        exponential = self.base_s * 2.0 ** min(max(attempts - 1, 0), 40)
        spread = zlib.crc32(f"{notification_id}#{attempts}".encode()) / 2**32
        return min(self.max_s, exponential * (0.5 + spread))

"""Commands: requests to change state. They carry raw user input; handlers validate it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime

import attrs

from stockalert.domain.model import Notification, Quote, require_recent_login


@attrs.frozen
class RequestKey:
    """Identity of one client request in the request ledger: (method, user, request_id)."""

    method: str
    subject: str
    request_id: str


class Command:
    """Base of all commands."""


class IdempotentCommand(Command):
    """A command executed at most once per request key; retries get the stored reply."""

    request_id: str

    def ledger_subject(self) -> str:
        """Whose request this is (the user id, or the e-mail before a user exists)."""
        raise NotImplementedError

    def check_session(self, now: datetime) -> None:
        """Refuse the caller's session for this command (raise a DomainError), or not.

        Checked by the bus before the request ledger, like authentication: such a refusal is
        never stored, so the same request retried after a new login can succeed."""

    def ledger_key(self) -> RequestKey:
        """Where this command's reply is stored."""
        return RequestKey(type(self).__name__, self.ledger_subject(), self.request_id.strip())

    def fingerprint(self, secret_digest: Callable[[str], str] | None = None) -> str:
        """Digest of the command's content (request id and session facts excluded).

        Reusing a request id for a different command is a client bug that must be reported,
        not answered with the other command's reply. A secret (a password) counts only
        through `secret_digest`, a keyed digest (an HMAC with a server key: the stored
        fingerprint is no unkeyed hash of a password to attack offline); without one it is
        left out.
        """
        content = attrs.asdict(
            self,  # type: ignore[arg-type]  # every concrete command is an attrs class
            filter=lambda a, _: a.name != "request_id" and a.metadata.get("fingerprint", True),
        )
        for field in attrs.fields(type(self)):  # type: ignore[arg-type]
            if field.metadata.get("secret"):
                if secret_digest is None:
                    del content[field.name]
                else:
                    content[field.name] = secret_digest(getattr(self, field.name))
        text = json.dumps([type(self).__name__, content], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


# Secrets enter the fingerprint only as a keyed digest (see `fingerprint`); facts about the
# caller's session rather than the request are left out (a retry after a new login is the
# same request).
SECRET = {"secret": True}
SESSION = {"fingerprint": False}


@attrs.frozen
class SubscriptionSpec:
    """Thresholds for one ticker as the user typed them (registration time)."""

    ticker: str
    high_value: float | None = None
    low_value: float | None = None
    rearm_percent: float | None = None


@attrs.frozen
class RegisterUser(IdempotentCommand):
    """Create an account, optionally with initial subscriptions."""

    request_id: str
    email: str
    password: str = attrs.field(repr=False, metadata=SECRET)
    subscriptions: tuple[SubscriptionSpec, ...] = ()

    def ledger_subject(self) -> str:
        return self.email.strip().lower()


@attrs.frozen
class SetSubscription(IdempotentCommand):
    """Create or change the subscription of a user to one ticker.

    A field left None keeps the stored value; `clear_high_value` / `clear_low_value` remove a
    threshold; `cooldown_s = 0` and `remind_every_s = 0` switch those options off.
    """

    request_id: str
    user_id: str
    ticker: str
    high_value: float | None = None
    low_value: float | None = None
    rearm_percent: float | None = None
    cooldown_s: float | None = None
    remind_every_s: float | None = None
    clear_high_value: bool = False
    clear_low_value: bool = False

    def ledger_subject(self) -> str:
        return self.user_id


@attrs.frozen
class RemoveSubscription(IdempotentCommand):
    """Stop watching one ticker."""

    request_id: str
    user_id: str
    ticker: str

    def ledger_subject(self) -> str:
        return self.user_id


@attrs.frozen
class DeleteUser(IdempotentCommand):
    """Remove the user and everything stored about them, now; `authenticated_at` is when the
    caller logged in (the deletion needs a recent login)."""

    request_id: str
    user_id: str
    authenticated_at: datetime = attrs.field(metadata=SESSION)

    def ledger_subject(self) -> str:
        return self.user_id

    def check_session(self, now: datetime) -> None:
        require_recent_login(self.authenticated_at, now)


@attrs.frozen
class LoginUser(Command):
    """Exchange e-mail and password for an expiring bearer token (a failure is counted
    against the account and `peer`, the client's address, for throttling)."""

    email: str
    password: str = attrs.field(repr=False, metadata=SECRET)
    peer: str = ""


@attrs.frozen
class LogoutUser(Command):
    """End every session of a user (not idempotent by request id: a second logout only
    ends the sessions begun since, which is what a user asking again wants)."""

    user_id: str


@attrs.frozen
class CollectPrices(Command):
    """One collection cycle: fetch the tickers in use, store and publish the new quotes,
    and mark each ticker ACTIVE, UNKNOWN or STALE (no quote newer than `stale_after_s`)."""

    stale_after_s: float = 3600.0


@attrs.frozen
class RecordQuotes(Command):
    """Store freshly collected quotes; only those newer than the stored ones count."""

    quotes: tuple[Quote, ...]


@attrs.frozen
class ApplyQuotes(Command):
    """Stored quotes read from to-alert-system: through the alert engine, in order, in one
    transaction (the alert-system's batch of what has arrived)."""

    quotes: tuple[Quote, ...]


@attrs.frozen
class LoadAlerts(Command):
    """Load the alert engine from storage and apply the quotes stored after each ticker's
    high-water mark: every ticker (start-up, `shards` None), or start owning the tickers of
    `shards` among `shard_count` (partitions assigned to this alert-system instance)."""

    shards: frozenset[int] | None = None
    shard_count: int = 0


@attrs.frozen
class DropAlerts(Command):
    """Stop evaluating the tickers of these shards (their partitions went elsewhere)."""

    shards: frozenset[int]


@attrs.frozen
class AssignRecipients(Command):
    """Start delivering the e-mails of the users of `shards` among `shard_count` (partitions
    of to-notifier assigned to this notifier instance)."""

    shards: frozenset[int]
    shard_count: int


@attrs.frozen
class RevokeRecipients(Command):
    """Stop delivering the e-mails of the users of `shards`; returns once no delivery to one
    of them is in flight."""

    shards: frozenset[int]


@attrs.frozen
class CleanUp(Command):
    """Retention: quotes older than the period (keeping the newest N per followed ticker),
    quotes of tickers nobody follows, request-ledger replies older than their TTL."""

    quote_retention_s: float = 7 * 24 * 3600.0
    keep_quotes: int = 20
    request_ttl_s: float = 24 * 3600.0


@attrs.frozen
class DeliverNotifications(Command):
    """Notifications read from to-notifier: the ledger gets those it does not have, then
    their users' due e-mails go out, each user's in order (the notifier's batch)."""

    notifications: tuple[Notification, ...]


@attrs.frozen
class RetryPendingNotifications(Command):
    """Deliver the PENDING notifications that are due (their backoff has passed), `batch`
    per mailer call, until none is due or the mail server is unavailable."""

    batch: int = attrs.field(default=100, validator=attrs.validators.ge(1))

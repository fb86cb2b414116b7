"""Logging in: an e-mail and a password for an expiring bearer token."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta

from stockalert.domain.commands import LoginUser, LogoutUser
from stockalert.domain.errors import InvalidArgument, QuotaExceeded, Unauthenticated
from stockalert.domain.model import Email, FailedLogins, LoginThrottle, ThrottleRule
from stockalert.domain.ports import Clock, PasswordHasher, TokenIssuer, UnitOfWork
from stockalert.domain.views import Done, LoggedIn

log = logging.getLogger(__name__)

DEFAULT_THROTTLE = LoginThrottle()


def unkeyed_digest(text: str) -> str:
    """The digest of a library bus without a key (tests); servers pass a keyed one."""
    return hashlib.sha256(text.encode()).hexdigest()


def _keys(
    throttle: LoginThrottle, email: Email, peer: str, digest: Callable[[str], str]
) -> dict[ThrottleRule, str]:
    """Each rule's key: its scope and a keyed hash (no e-mail or address in the table)."""
    parts = {"account": f"account:{email}", "peer": f"peer:{peer}"}
    parts["account+peer"] = f"{parts['account']}|{parts['peer']}"
    return {rule: f"{rule.scope}:{digest(parts[rule.scope])[:40]}" for rule in throttle.rules}


def _refuse_if_throttled(
    keys: dict[ThrottleRule, str], seen: dict[str, FailedLogins], now: datetime, tag: str
) -> None:
    for rule, key in keys.items():
        state = seen.get(key)
        if state is None or state.blocked_until is None or state.blocked_until <= now:
            continue
        wait = math.ceil((state.blocked_until - now).total_seconds())
        log.warning("event=login_throttled %s scope=%s retry_in_s=%d", tag, rule.scope, wait)
        whose = {
            "account+peer": "for this account from this address",
            "peer": "from this address",
            "account": "for this account",
        }[rule.scope]
        raise QuotaExceeded(
            "email" if rule.scope != "peer" else "peer",
            f"too many failed logins {whose}; retry in {wait} s",
        )


def _count_failure(
    uow: UnitOfWork, keys: dict[ThrottleRule, str], throttle: LoginThrottle, now: datetime
) -> int:
    """Count a failure under every key; the account+peer count (for the log line)."""
    forgotten = now - timedelta(seconds=throttle.window_s)
    with uow:
        seen = uow.login_failures.get_many(keys.values(), lock=True)
        counted = 0
        for rule, key in keys.items():
            before = seen.get(key)
            if before is None or before.last_failure_at < forgotten:
                failures = 1  # the first, or the first since the old ones were forgotten
            else:
                failures = before.failures + 1
            delay = throttle.delay_s(rule, failures)
            until = now + timedelta(seconds=delay) if delay else None
            uow.login_failures.save(key, FailedLogins(failures, now, until))
            if rule.scope == "account+peer":
                counted = failures
        uow.commit()
    return counted


def login_user(
    cmd: LoginUser,
    uow: UnitOfWork,
    *,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    clock: Clock,
    decoy_hash: str,
    throttle: LoginThrottle = DEFAULT_THROTTLE,
    digest: Callable[[str], str] = unkeyed_digest,
) -> LoggedIn:
    """A token for the right e-mail and password; the same answer for every wrong pair.
    Throttled per account and address (`LoginThrottle`): while a key waits, attempts are
    refused (RESOURCE_EXHAUSTED) before the password is even checked."""
    email = Email.parse(cmd.email)
    if not cmd.password:
        raise InvalidArgument("password", "must not be empty")
    keys = _keys(throttle, email, cmd.peer, digest)
    # The log names the account by a keyed hash (no e-mail in logs) and the client as is.
    tag = f"account={digest(f'account:{email}')[:16]} peer={cmd.peer or '-'}"
    now = clock.now()
    with uow:
        user = uow.users.get_by_email(email)
        seen = uow.login_failures.get_many(keys.values())
    _refuse_if_throttled(keys, seen, now, tag)
    # Verify against a decoy when the user is unknown, so timing does not reveal accounts.
    matches = hasher.verify(decoy_hash if user is None else user.password_hash, cmd.password)
    if user is None or not matches:
        failures = _count_failure(uow, keys, throttle, now)
        log.info("event=login_failed %s failures=%d", tag, failures)
        raise Unauthenticated("wrong e-mail or password")
    if seen:  # a success clears its account's counts (not the address's: it may spray)
        with uow:
            uow.login_failures.clear([k for r, k in keys.items() if r.scope != "peer"])
            uow.commit()
    token, expires_at = tokens.issue(user.user_id, now, user.session_version)
    log.info("event=login user_id=%s", user.user_id)
    return LoggedIn(token, expires_at)


def logout_user(cmd: LogoutUser, uow: UnitOfWork) -> Done:
    """End every session of the user: the tokens issued so far are refused from now on, by
    every API instance (each call checks the session version)."""
    with uow:
        uow.users.end_sessions(cmd.user_id)
        uow.commit()
    log.info("event=logout user_id=%s", cmd.user_id)
    return Done()

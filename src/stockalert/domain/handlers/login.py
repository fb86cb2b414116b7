"""Logging in: an e-mail and a password for an expiring bearer token."""

from __future__ import annotations

import logging

from stockalert.domain.commands import LoginUser, LogoutUser
from stockalert.domain.errors import InvalidArgument, Unauthenticated
from stockalert.domain.model import Email
from stockalert.domain.ports import Clock, PasswordHasher, TokenIssuer, UnitOfWork
from stockalert.domain.views import Done, LoggedIn

log = logging.getLogger(__name__)


def login_user(
    cmd: LoginUser,
    uow: UnitOfWork,
    *,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    clock: Clock,
    decoy_hash: str,
) -> LoggedIn:
    """A token for the right e-mail and password; the same answer for every wrong pair."""
    email = Email.parse(cmd.email)
    if not cmd.password:
        raise InvalidArgument("password", "must not be empty")
    with uow:
        user = uow.users.get_by_email(email)
    # Verify against a decoy when the user is unknown, so timing does not reveal accounts.
    matches = hasher.verify(decoy_hash if user is None else user.password_hash, cmd.password)
    if user is None or not matches:
        log.info("event=login_failed")
        raise Unauthenticated("wrong e-mail or password")
    token, expires_at = tokens.issue(user.user_id, clock.now(), user.session_version)
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

"""Query handlers: read-only, over the read model (which may be a replica)."""

from __future__ import annotations

from collections.abc import Collection

from stockalert.domain.errors import InvalidArgument, NotFound, Unauthenticated
from stockalert.domain.model import NotificationRecord, Ticker
from stockalert.domain.ports import Clock, ReadModel, TokenIssuer
from stockalert.domain.queries import (
    DEFAULT_NOTIFICATION_LIMIT,
    MAX_AVERAGE_COUNT,
    MAX_NOTIFICATION_LIMIT,
    Authenticate,
    GetAverageValue,
    GetLatestValue,
    ListNotifications,
    ListSubscriptions,
)
from stockalert.domain.views import AverageValue, LatestValue, Principal, SubscriptionView


def authenticate(
    query: Authenticate, read: ReadModel, *, tokens: TokenIssuer, clock: Clock
) -> Principal:
    """The caller behind a bearer token; the token of a deleted user, or of a session the
    user ended, is no longer valid."""
    if not query.token:
        raise Unauthenticated("missing bearer token")
    claims = tokens.verify(query.token, clock.now())
    version = read.session_version(claims.user_id)
    if version is None:
        raise Unauthenticated("the account of this token no longer exists")
    if version != claims.session_version:
        raise Unauthenticated("this session has ended (logged out); log in again")
    return Principal(claims.user_id, claims.issued_at)


def _require_user(read: ReadModel, user_id: str) -> None:
    if not read.user_exists(user_id):
        raise _no_user()


def _no_user() -> NotFound:
    return NotFound("user not found", field="user_id")


def _watched_ticker(watched: Collection[Ticker] | None, raw: str) -> Ticker:
    """The ticker a value query is about: the named one, or the user's only one."""
    if watched is None:
        raise _no_user()
    if not raw.strip():
        if not watched:
            raise NotFound("you are not watching any ticker", field="ticker")
        if len(watched) > 1:
            names = ", ".join(sorted(t.value for t in watched))
            raise InvalidArgument("ticker", f"required: you watch several tickers ({names})")
        return next(iter(watched))
    ticker = Ticker.parse(raw)
    if ticker not in watched:
        raise NotFound(f"you are not watching {ticker}", field="ticker")
    return ticker


def get_latest_value(query: GetLatestValue, read: ReadModel) -> LatestValue:
    """Newest stored quote of a watched ticker (one read: the user, what they watch, the
    newest quotes of it)."""
    named = Ticker.parse(query.ticker) if query.ticker.strip() else None
    watched = read.latest_of_watched(query.user_id, named)
    ticker = _watched_ticker(watched, query.ticker)
    quote = None if watched is None else watched[ticker]
    if quote is None:
        raise NotFound(f"no price of {ticker} collected yet", field="ticker")
    return LatestValue(ticker.value, quote.price, quote.quoted_at)


def get_average_value(query: GetAverageValue, read: ReadModel) -> AverageValue:
    """Mean of the newest `count` stored quotes of a watched ticker."""
    if isinstance(query.count, bool) or not isinstance(query.count, int):
        raise InvalidArgument("count", "must be a whole number")
    if not 1 <= query.count <= MAX_AVERAGE_COUNT:
        raise InvalidArgument("count", f"must be between 1 and {MAX_AVERAGE_COUNT}")
    ticker = _watched_ticker(read.watched_tickers(query.user_id), query.ticker)
    prices = read.newest_prices(ticker, query.count)
    if not prices:
        raise NotFound(f"no price of {ticker} collected yet", field="ticker")
    return AverageValue(ticker.value, sum(prices) / len(prices), len(prices))


def list_subscriptions(query: ListSubscriptions, read: ReadModel) -> list[SubscriptionView]:
    """The user's subscriptions, by ticker."""
    views = read.subscriptions_of(query.user_id)
    if views is None:
        raise _no_user()
    return sorted(views, key=lambda view: view.ticker)


def list_notifications(query: ListNotifications, read: ReadModel) -> list[NotificationRecord]:
    """The user's alert history, newest first."""
    if isinstance(query.limit, bool) or not isinstance(query.limit, int):
        raise InvalidArgument("limit", "must be a whole number")
    if not 0 <= query.limit <= MAX_NOTIFICATION_LIMIT:
        raise InvalidArgument("limit", f"must be between 0 and {MAX_NOTIFICATION_LIMIT}")
    _require_user(read, query.user_id)
    return read.notifications_of(query.user_id, query.limit or DEFAULT_NOTIFICATION_LIMIT)

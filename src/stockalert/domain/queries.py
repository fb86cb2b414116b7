"""Queries: requests to read. They never change state (the read side of CQRS)."""

from __future__ import annotations

import attrs

DEFAULT_NOTIFICATION_LIMIT = 50
MAX_NOTIFICATION_LIMIT = 1000
MAX_AVERAGE_COUNT = 10_000


class Query:
    """Base of all queries."""


@attrs.frozen
class Authenticate(Query):
    """Who a bearer token belongs to; rejects expired and forged tokens, deleted users'
    tokens and the tokens of sessions the user ended (LogoutUser): one read of the user's
    session version on every call."""

    token: str = attrs.field(repr=False)


@attrs.frozen
class GetLatestValue(Query):
    """Newest stored quote of a ticker the user watches ("" = the user's only ticker)."""

    user_id: str
    ticker: str = ""


@attrs.frozen
class GetAverageValue(Query):
    """Mean of the newest `count` stored quotes (fewer when fewer exist)."""

    user_id: str
    count: int
    ticker: str = ""


@attrs.frozen
class ListSubscriptions(Query):
    """The user's subscriptions with thresholds, side states and ticker status."""

    user_id: str


@attrs.frozen
class ListNotifications(Query):
    """The user's alert history, newest first, with delivery status (0 = default limit)."""

    user_id: str
    limit: int = 0

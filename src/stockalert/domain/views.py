"""What handlers answer: command results and read-model views (plain, serialisable)."""

from __future__ import annotations

from datetime import datetime

import attrs

from stockalert.domain.model import SideState, SideStatus, Subscription, TickerStatus


@attrs.frozen
class UserRegistered:
    """Reply to RegisterUser."""

    user_id: str


@attrs.frozen
class LoggedIn:
    """Reply to LoginUser."""

    token: str = attrs.field(repr=False)
    expires_at: datetime


@attrs.frozen
class Principal:
    """The authenticated caller: a user id and when they logged in."""

    user_id: str
    authenticated_at: datetime


@attrs.frozen
class CollectionReport:
    """What one collection cycle did."""

    tickers: int
    stored: int
    unknown: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


@attrs.frozen
class CleanupReport:
    """What one clean-up did."""

    quotes_removed: int
    replies_expired: int


@attrs.frozen
class Done:
    """Reply of a command that has nothing to return."""


@attrs.frozen
class SubscriptionView:
    """A subscription as its user sees it."""

    subscription_id: str
    ticker: str
    high_value: float | None
    low_value: float | None
    rearm_percent: float
    cooldown_s: float | None
    remind_every_s: float | None
    high_status: SideStatus | None
    low_status: SideStatus | None
    ticker_status: TickerStatus

    @classmethod
    def of(
        cls, sub: Subscription, high: SideState, low: SideState, status: TickerStatus
    ) -> SubscriptionView:
        """What a user sees of one subscription (a side without threshold has no status)."""
        return cls(
            subscription_id=sub.subscription_id,
            ticker=sub.ticker.value,
            high_value=sub.high_value,
            low_value=sub.low_value,
            rearm_percent=sub.rearm_percent,
            cooldown_s=sub.cooldown_s,
            remind_every_s=sub.remind_every_s,
            high_status=None if sub.high_value is None else high.status,
            low_status=None if sub.low_value is None else low.status,
            ticker_status=status,
        )


@attrs.frozen
class LatestValue:
    """Reply to GetLatestValue."""

    ticker: str
    value: float
    quoted_at: datetime


@attrs.frozen
class AverageValue:
    """Reply to GetAverageValue."""

    ticker: str
    average_value: float
    samples: int

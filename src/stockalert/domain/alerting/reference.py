"""The naive alert engine: every quote is checked against every subscription of its ticker.

It is the executable specification the incremental engine is tested and benchmarked against
(and roughly what the original design did). Keep it obvious; never optimise it.
"""

from __future__ import annotations

from stockalert.domain.alerting.rules import adopt_change, evaluate
from stockalert.domain.model import (
    ARMED,
    Notification,
    NotificationKind,
    Quote,
    Side,
    SideState,
    Subscription,
    notification_id,
)

SIDES = (Side.HIGH, Side.LOW)


class ReferenceAlertEngine:
    """Same contract as `AlertEngine`, one loop over the ticker's subscriptions per quote."""

    def __init__(self) -> None:
        self._subs: dict[str, Subscription] = {}
        self._by_ticker: dict[str, dict[str, Subscription]] = {}
        self._states: dict[tuple[str, Side], SideState] = {}
        self._last_at: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._subs)

    def upsert(
        self,
        sub: Subscription,
        high: SideState | None = None,
        low: SideState | None = None,
    ) -> None:
        """Add or change a subscription; explicit states (from storage) win over the rules."""
        old = self._subs.get(sub.subscription_id)
        if old is not None and old.ticker != sub.ticker:
            del self._by_ticker[old.ticker.value][sub.subscription_id]
        for side, given in ((Side.HIGH, high), (Side.LOW, low)):
            key = (sub.subscription_id, side)
            current = self._states.get(key, ARMED)
            self._states[key] = (
                given if given is not None else adopt_change(side, old, current, sub)
            )
        self._subs[sub.subscription_id] = sub
        self._by_ticker.setdefault(sub.ticker.value, {})[sub.subscription_id] = sub

    def remove(self, subscription_id: str) -> None:
        """Forget a subscription; unknown ids are ignored."""
        sub = self._subs.pop(subscription_id, None)
        if sub is None:
            return
        del self._by_ticker[sub.ticker.value][subscription_id]
        for side in SIDES:
            self._states.pop((subscription_id, side), None)

    def state_of(self, subscription_id: str, side: Side) -> SideState:
        """Current state of one side."""
        return self._states.get((subscription_id, side), ARMED)

    def last_applied(self, ticker: str) -> float | None:
        """Time of the newest quote applied for the ticker."""
        return self._last_at.get(ticker)

    def apply(self, quote: Quote) -> list[Notification]:
        """Apply one quote; returns the notifications it causes."""
        ticker = quote.ticker.value
        at = quote.timestamp
        last = self._last_at.get(ticker)
        if last is not None and at <= last:
            return []
        self._last_at[ticker] = at
        out: list[Notification] = []
        for sub in self._by_ticker.get(ticker, {}).values():
            for side in SIDES:
                key = (sub.subscription_id, side)
                state, kind = evaluate(sub, side, self._states[key], quote.price, at)
                self._states[key] = state
                if kind is not None:
                    out.append(_notification(sub, side, state, kind, quote))
        return out


def _notification(
    sub: Subscription, side: Side, state: SideState, kind: NotificationKind, quote: Quote
) -> Notification:
    threshold = sub.threshold(side)
    assert threshold is not None  # evaluate() only notifies for a side that has a threshold
    reminder = state.reminders if kind is NotificationKind.REMINDER else 0
    return Notification(
        notification_id=notification_id(sub.subscription_id, side, state.episode, reminder),
        subscription_id=sub.subscription_id,
        user_id=sub.user_id,
        email=sub.email,
        ticker=sub.ticker,
        side=side,
        kind=kind,
        price=quote.price,
        threshold=threshold,
        quoted_at=quote.quoted_at,
        episode=state.episode,
        correlation_id=quote.correlation_id,
    )

"""The alert semantics of one subscription side, written as plain functions.

This module is the specification (ARCHITECTURE.md section 4). `reference.py` applies it to
every subscription of a ticker; `engine.py` reaches the same result touching only the
subscriptions whose state changes. Both use the formulas below, so they agree to the bit.

One side is a state machine:

* ARMED and the price is strictly beyond the threshold (HIGH: price > high_value,
  LOW: price < low_value) -> FIRED, a CROSSING notification, `episode` + 1.
* FIRED and the price is back inside by the re-arm band (HIGH: price <= high * (1 - r/100),
  LOW: price >= low * (1 + r/100)) -> ARMED, silently. With `cooldown_s`, a side stays FIRED
  for at least that long after it fired: re-arming needs a quote at or after
  fired_at + cooldown_s whose price is inside the band. A price that oscillates around the
  threshold therefore yields one notification, and at most one per cooldown.
* FIRED with `remind_every_s`: at the first quote at or after `next_reminder_at`, a REMINDER
  is sent if the price is still strictly beyond the threshold; either way the next check is
  that quote's time + remind_every_s.
* A new or changed threshold starts ARMED; `episode` never goes back, so notification ids of a
  later crossing never collide with earlier ones.
"""

from __future__ import annotations

import attrs

from stockalert.domain.model import (
    ARMED,
    NotificationKind,
    Side,
    SideState,
    SideStatus,
    Subscription,
)


def rearm_level(side: Side, threshold: float, rearm_percent: float) -> float:
    """Price at or inside of which a FIRED side re-arms."""
    if side is Side.HIGH:
        return threshold * (1.0 - rearm_percent / 100.0)
    return threshold * (1.0 + rearm_percent / 100.0)


def is_beyond(side: Side, price: float, threshold: float) -> bool:
    """True when the price is strictly past the threshold on that side."""
    return price > threshold if side is Side.HIGH else price < threshold


def is_back_inside(side: Side, price: float, level: float) -> bool:
    """True when the price has come back inside far enough to re-arm."""
    return price <= level if side is Side.HIGH else price >= level


def evaluate(
    sub: Subscription, side: Side, state: SideState, price: float, at: float
) -> tuple[SideState, NotificationKind | None]:
    """One quote applied to one side: the new state and what (if anything) to notify."""
    threshold = sub.threshold(side)
    if threshold is None:
        return state, None
    if state.status is SideStatus.FIRED:
        fired_at = state.fired_at if state.fired_at is not None else at
        cooling = sub.cooldown_s is not None and at < fired_at + sub.cooldown_s
        level = rearm_level(side, threshold, sub.rearm_percent)
        if not cooling and is_back_inside(side, price, level):
            return SideState(episode=state.episode), None
        if (
            state.next_reminder_at is not None
            and sub.remind_every_s is not None
            and at >= state.next_reminder_at
        ):
            following = at + sub.remind_every_s
            if is_beyond(side, price, threshold):
                return (
                    attrs.evolve(state, reminders=state.reminders + 1, next_reminder_at=following),
                    NotificationKind.REMINDER,
                )
            return attrs.evolve(state, next_reminder_at=following), None
        return state, None
    if is_beyond(side, price, threshold):
        every = sub.remind_every_s
        return (
            SideState(
                status=SideStatus.FIRED,
                episode=state.episode + 1,
                fired_at=at,
                next_reminder_at=None if every is None else at + every,
            ),
            NotificationKind.CROSSING,
        )
    return state, None


def adopt_change(
    side: Side, old: Subscription | None, state: SideState, new: Subscription
) -> SideState:
    """State of a side after its subscription was created or changed.

    A new or changed threshold re-arms (keeping the episode count). An unchanged threshold
    keeps a FIRED side FIRED; its reminder schedule follows the new `remind_every_s`.
    """
    new_threshold = new.threshold(side)
    old_threshold = None if old is None else old.threshold(side)
    if old is None or new_threshold is None or new_threshold != old_threshold:
        return ARMED if state.episode == 0 else SideState(episode=state.episode)
    if state.status is SideStatus.ARMED:
        return state
    every = new.remind_every_s
    if every is None:
        return attrs.evolve(state, next_reminder_at=None)
    if every == old.remind_every_s and state.next_reminder_at is not None:
        return state
    fired_at = state.fired_at if state.fired_at is not None else 0.0
    last_check = fired_at
    if state.next_reminder_at is not None and old.remind_every_s is not None:
        last_check = state.next_reminder_at - old.remind_every_s
    return attrs.evolve(state, next_reminder_at=last_check + every)

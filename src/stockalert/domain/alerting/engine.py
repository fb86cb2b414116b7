"""The incremental alert engine: a quote costs O(log n + k), k = sides whose state changes.

Per ticker it keeps four sorted sets of subscription sides and a timer heap:

* armed HIGH sides by threshold: the ones a price fires are a prefix (threshold < price);
* armed LOW sides by threshold: a suffix (threshold > price);
* fired HIGH sides by re-arm level: the ones a price re-arms are a suffix (level >= price);
* fired LOW sides by re-arm level: a prefix (level <= price);
* timers: the end of a side's cooldown (it joins the fired set only then) and reminders.

The ends of the four sets and the first timer are cached as plain floats, so a quote that
changes nothing (the common case) is five comparisons. The semantics are those of `rules.py`;
`reference.py` is the slow, obvious version this engine is property-tested against.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final

import attrs
from sortedcontainers import SortedList

from stockalert.domain.alerting.rules import adopt_change, is_beyond, rearm_level
from stockalert.domain.model import (
    ARMED,
    Notification,
    NotificationKind,
    Quote,
    Side,
    SideState,
    SideStatus,
    Subscription,
    notification_id,
)

_INF: Final = math.inf

# Where a side currently lives in its ticker's book.
_NOWHERE: Final = 0
_IN_ARMED: Final = 1
_IN_FIRED: Final = 2
_COOLING: Final = 3  # FIRED, waiting in the timer heap for its cooldown to end

_COOLDOWN_END: Final = 0
_REMINDER: Final = 1


@attrs.frozen
class SideChange:
    """The new state of one side, for persisting: one row per changed side."""

    subscription_id: str
    side: Side
    state: SideState


class _Side:
    """Mutable, indexable state of one side of one subscription (engine-internal)."""

    __slots__ = (
        "armed_key",
        "episode",
        "fired_at",
        "fired_key",
        "high",
        "level",
        "next_reminder_at",
        "place",
        "reminders",
        "side",
        "status",
        "sub",
        "threshold",
        "token",
    )

    def __init__(
        self, sub: Subscription, side: Side, threshold: float, state: SideState, seq: int
    ) -> None:
        self.sub = sub
        self.side = side
        self.high = side is Side.HIGH
        self.threshold = threshold
        self.level = rearm_level(side, threshold, sub.rearm_percent)
        self.status = state.status
        self.episode = state.episode
        self.fired_at = state.fired_at
        self.reminders = state.reminders
        self.next_reminder_at = state.next_reminder_at
        self.place = _NOWHERE
        self.token = 0
        # Sort keys, built once: seq is unique, so tuples never compare the object itself.
        self.armed_key = (threshold, seq, self)
        self.fired_key = (self.level, seq, self)

    def snapshot(self) -> SideState:
        return SideState(
            status=self.status,
            episode=self.episode,
            fired_at=self.fired_at,
            reminders=self.reminders,
            next_reminder_at=self.next_reminder_at,
        )


class _Book:
    """Everything the engine indexes for one ticker."""

    __slots__ = (
        "armed_high",
        "armed_low",
        "fire_above",
        "fire_below",
        "fired_high",
        "fired_low",
        "last_at",
        "next_due",
        "rearm_at_or_above",
        "rearm_at_or_below",
        "timers",
    )

    def __init__(self) -> None:
        self.armed_high: Any = SortedList()
        self.armed_low: Any = SortedList()
        self.fired_high: Any = SortedList()
        self.fired_low: Any = SortedList()
        self.timers: list[tuple[float, int, int, _Side, int]] = []
        self.last_at: float | None = None
        # Cached bounds: no state can change while
        # fire_below <= price <= fire_above and rearm_at_or_below < price < rearm_at_or_above
        # and the quote is older than next_due.
        self.fire_above = _INF
        self.fire_below = -_INF
        self.rearm_at_or_below = -_INF
        self.rearm_at_or_above = _INF
        self.next_due = _INF

    def refresh_bounds(self) -> None:
        self.fire_above = self.armed_high[0][0] if self.armed_high else _INF
        self.fire_below = self.armed_low[-1][0] if self.armed_low else -_INF
        self.rearm_at_or_below = self.fired_high[-1][0] if self.fired_high else -_INF
        self.rearm_at_or_above = self.fired_low[0][0] if self.fired_low else _INF
        self.next_due = self.timers[0][0] if self.timers else _INF


class AlertEngine:
    """Turns quotes into notifications, once per crossing, touching only what changes."""

    def __init__(self) -> None:
        self._books: dict[str, _Book] = {}
        self._sides: dict[str, list[_Side]] = {}
        self._subs: dict[str, Subscription] = {}
        self._dormant: dict[tuple[str, Side], int] = {}  # episode count of unset sides
        self._seq = itertools.count()
        self._changed: dict[int, _Side] = {}

    def __len__(self) -> int:
        return len(self._subs)

    # ----- subscriptions -------------------------------------------------------------------

    def upsert(
        self,
        sub: Subscription,
        high: SideState | None = None,
        low: SideState | None = None,
    ) -> None:
        """Add or change a subscription; explicit states (from storage) win over the rules."""
        sid = sub.subscription_id
        old = self._subs.get(sid)
        states = [
            given if given is not None else adopt_change(side, old, self.state_of(sid, side), sub)
            for side, given in ((Side.HIGH, high), (Side.LOW, low))
        ]
        self._unplace_all(sid)
        self._subs[sid] = sub
        book = self._book(sub.ticker.value)
        placed: list[_Side] = []
        for side, state in zip((Side.HIGH, Side.LOW), states, strict=True):
            threshold = sub.threshold(side)
            if threshold is None:
                if state.episode:
                    self._dormant[(sid, side)] = state.episode
                continue
            self._dormant.pop((sid, side), None)
            entry = _Side(sub, side, threshold, state, next(self._seq))
            self._place(book, entry)
            placed.append(entry)
        self._sides[sid] = placed
        book.refresh_bounds()

    def load(
        self,
        subs: Iterable[Subscription],
        states: Mapping[tuple[str, Side], SideState] | None = None,
    ) -> None:
        """Bulk-add subscriptions not yet in the engine (start-up), sorting each set once."""
        known = states or {}
        pending: dict[str, tuple[list[object], list[object], list[object], list[object]]] = {}
        for sub in subs:
            sid = sub.subscription_id
            if sid in self._subs:
                raise ValueError(f"subscription {sid} is loaded already; use upsert")
            self._subs[sid] = sub
            book = self._book(sub.ticker.value)
            lists = pending.get(sub.ticker.value)
            if lists is None:
                lists = pending[sub.ticker.value] = ([], [], [], [])
            placed = []
            for index, side in enumerate((Side.HIGH, Side.LOW)):
                state = known.get((sid, side), ARMED)
                threshold = sub.threshold(side)
                if threshold is None:
                    if state.episode:
                        self._dormant[(sid, side)] = state.episode
                    continue
                entry = _Side(sub, side, threshold, state, next(self._seq))
                placed.append(entry)
                if state.status is SideStatus.ARMED:
                    entry.place = _IN_ARMED
                    lists[index].append(entry.armed_key)
                elif sub.cooldown_s is None and entry.next_reminder_at is None:
                    entry.place = _IN_FIRED
                    lists[2 + index].append(entry.fired_key)
                else:
                    self._place(book, entry)
            self._sides[sid] = placed
        for ticker, (armed_high, armed_low, fired_high, fired_low) in pending.items():
            book = self._books[ticker]
            book.armed_high.update(armed_high)
            book.armed_low.update(armed_low)
            book.fired_high.update(fired_high)
            book.fired_low.update(fired_low)
            book.refresh_bounds()

    def remove(self, subscription_id: str) -> None:
        """Forget a subscription; unknown ids are ignored."""
        if self._subs.pop(subscription_id, None) is None:
            return
        self._unplace_all(subscription_id)
        del self._sides[subscription_id]
        for side in (Side.HIGH, Side.LOW):
            self._dormant.pop((subscription_id, side), None)

    def drop_tickers(self, tickers: Collection[str]) -> None:
        """Forget every subscription of these tickers and what was applied to them."""
        doomed = [sid for sid, sub in self._subs.items() if sub.ticker.value in tickers]
        for sid in doomed:
            self.remove(sid)
        for ticker in tickers:
            self._books.pop(ticker, None)

    def tickers(self) -> list[str]:
        """The tickers the engine knows (with subscriptions, or quotes applied)."""
        return list(self._books)

    def state_of(self, subscription_id: str, side: Side) -> SideState:
        """Current state of one side (ARMED with episode 0 for an unknown one)."""
        for entry in self._sides.get(subscription_id, ()):
            if entry.side is side:
                return entry.snapshot()
        episode = self._dormant.get((subscription_id, side), 0)
        return ARMED if episode == 0 else SideState(episode=episode)

    def last_applied(self, ticker: str) -> float | None:
        """Time of the newest quote applied for the ticker."""
        book = self._books.get(ticker)
        return None if book is None else book.last_at

    def restore_last_applied(self, ticker: str, at: float) -> None:
        """After a restart: quotes not newer than `at` were applied already."""
        self._book(ticker).last_at = at

    def drain_changes(self) -> list[SideChange]:
        """Sides whose state changed since the last call, for the caller to persist."""
        changes = [
            SideChange(entry.sub.subscription_id, entry.side, entry.snapshot())
            for entry in self._changed.values()
            if entry.place != _NOWHERE
        ]
        self._changed.clear()
        return changes

    # ----- quotes --------------------------------------------------------------------------

    def apply(self, quote: Quote) -> list[Notification]:
        """Apply one quote; returns the notifications it causes."""
        book = self._books.get(quote.ticker.value)
        if book is None:
            book = self._book(quote.ticker.value)
        at = quote.timestamp
        if book.last_at is not None and at <= book.last_at:
            return []  # out of order or duplicate
        book.last_at = at
        price = quote.price
        if (
            book.fire_below <= price <= book.fire_above
            and book.rearm_at_or_below < price < book.rearm_at_or_above
            and at < book.next_due
        ):
            return []
        out: list[Notification] = []
        if at >= book.next_due:
            self._run_timers(book, quote, at, out)
        if price <= book.rearm_at_or_below:
            fired = book.fired_high
            start = fired.bisect_left((price,))
            self._rearm(book.armed_high, fired[start:])
            del fired[start:]
        if price >= book.rearm_at_or_above:
            fired = book.fired_low
            stop = fired.bisect_left((price, _INF))
            self._rearm(book.armed_low, fired[:stop])
            del fired[:stop]
        if price > book.fire_above:
            armed = book.armed_high
            stop = armed.bisect_left((price,))
            self._fire(book, book.fired_high, armed[:stop], quote, at, out)
            del armed[:stop]
        if price < book.fire_below:
            armed = book.armed_low
            start = armed.bisect_left((price, _INF))
            self._fire(book, book.fired_low, armed[start:], quote, at, out)
            del armed[start:]
        book.refresh_bounds()
        return out

    # ----- internals -----------------------------------------------------------------------

    def _book(self, ticker: str) -> _Book:
        book = self._books.get(ticker)
        if book is None:
            book = self._books[ticker] = _Book()
        return book

    def _rearm(self, armed: Any, keys: list[tuple[float, int, _Side]]) -> None:
        changed = self._changed
        for _, _, entry in keys:
            entry.status = SideStatus.ARMED
            entry.fired_at = None
            entry.reminders = 0
            entry.next_reminder_at = None
            entry.token += 1  # voids its pending reminder
            entry.place = _IN_ARMED
            changed[id(entry)] = entry
        armed.update([entry.armed_key for _, _, entry in keys])

    def _fire(
        self,
        book: _Book,
        fired: Any,
        keys: list[tuple[float, int, _Side]],
        quote: Quote,
        at: float,
        out: list[Notification],
    ) -> None:
        changed = self._changed
        to_fired = []
        timers = book.timers
        price = quote.price
        for _, _, entry in keys:
            sub = entry.sub
            entry.status = SideStatus.FIRED
            entry.episode += 1
            entry.fired_at = at
            entry.reminders = 0
            every = sub.remind_every_s
            if every is None:
                entry.next_reminder_at = None
            else:
                entry.next_reminder_at = at + every
                heapq.heappush(timers, (at + every, next(self._seq), _REMINDER, entry, entry.token))
            if sub.cooldown_s is None:
                entry.place = _IN_FIRED
                to_fired.append(entry.fired_key)
            else:
                entry.place = _COOLING
                heapq.heappush(
                    timers,
                    (at + sub.cooldown_s, next(self._seq), _COOLDOWN_END, entry, entry.token),
                )
            changed[id(entry)] = entry
            out.append(
                Notification(
                    notification_id(sub.subscription_id, entry.side, entry.episode),
                    sub.subscription_id,
                    sub.user_id,
                    sub.email,
                    sub.ticker,
                    entry.side,
                    NotificationKind.CROSSING,
                    price,
                    entry.threshold,
                    quote.quoted_at,
                    entry.episode,
                    correlation_id=quote.correlation_id,
                )
            )
        fired.update(to_fired)

    def _run_timers(self, book: _Book, quote: Quote, at: float, out: list[Notification]) -> None:
        timers = book.timers
        price = quote.price
        while timers and timers[0][0] <= at:
            _, _, kind, entry, token = heapq.heappop(timers)
            if token != entry.token or entry.status is not SideStatus.FIRED:
                continue  # stale: the side re-armed, changed or was removed since
            if kind == _COOLDOWN_END:
                if entry.place == _COOLING:
                    entry.place = _IN_FIRED
                    (book.fired_high if entry.high else book.fired_low).add(entry.fired_key)
                continue
            every = entry.sub.remind_every_s
            if every is None or entry.next_reminder_at is None or at < entry.next_reminder_at:
                continue
            entry.next_reminder_at = following = at + every
            heapq.heappush(timers, (following, next(self._seq), _REMINDER, entry, token))
            self._changed[id(entry)] = entry
            if is_beyond(entry.side, price, entry.threshold):
                entry.reminders += 1
                sub = entry.sub
                out.append(
                    Notification(
                        notification_id(
                            sub.subscription_id, entry.side, entry.episode, entry.reminders
                        ),
                        sub.subscription_id,
                        sub.user_id,
                        sub.email,
                        sub.ticker,
                        entry.side,
                        NotificationKind.REMINDER,
                        price,
                        entry.threshold,
                        quote.quoted_at,
                        entry.episode,
                        correlation_id=quote.correlation_id,
                    )
                )
        book.refresh_bounds()

    def _place(self, book: _Book, entry: _Side) -> None:
        if entry.status is SideStatus.ARMED:
            entry.place = _IN_ARMED
            (book.armed_high if entry.high else book.armed_low).add(entry.armed_key)
            return
        sub = entry.sub
        if sub.cooldown_s is not None and entry.fired_at is not None:
            entry.place = _COOLING
            due = entry.fired_at + sub.cooldown_s
            heapq.heappush(book.timers, (due, next(self._seq), _COOLDOWN_END, entry, entry.token))
        else:
            entry.place = _IN_FIRED
            (book.fired_high if entry.high else book.fired_low).add(entry.fired_key)
        if entry.next_reminder_at is not None:
            heapq.heappush(
                book.timers,
                (entry.next_reminder_at, next(self._seq), _REMINDER, entry, entry.token),
            )

    def _unplace_all(self, subscription_id: str) -> None:
        entries = self._sides.get(subscription_id)
        if not entries:
            return
        book = self._books[entries[0].sub.ticker.value]
        for entry in entries:
            if entry.place == _IN_ARMED:
                (book.armed_high if entry.high else book.armed_low).remove(entry.armed_key)
            elif entry.place == _IN_FIRED:
                (book.fired_high if entry.high else book.fired_low).remove(entry.fired_key)
            entry.place = _NOWHERE
            entry.token += 1
            self._changed.pop(id(entry), None)
        self._sides[subscription_id] = []
        book.refresh_bounds()

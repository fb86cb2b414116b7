"""The alert engine of one process, over the tickers it owns, kept in step with storage.

The engine lives in memory; storage is the source of truth. Applying quotes writes, in one
transaction, the side states that changed, the per-ticker high-water mark (the time of the
newest quote applied) and a PENDING ledger row per notification raised (the outbox the
notifier delivers from). So no crash point leaves a FIRED side without its notification,
and a reload applies exactly the stored quotes after the mark: a quote is never evaluated
twice, and one stored but not yet applied (a crash in between) is applied once.

If persisting fails (database outage), the engine is ahead of storage: the tracker forgets
it, and the next use rebuilds it from storage, catching up the quotes after the marks.

An embedded run owns every ticker; an alert-system instance owns the tickers of its Kafka
partitions (`domain/sharding.py`) and loads or drops them as partitions are assigned or
revoked. Subscription changes are taken from storage, never from the message that announced
them: a late or repeated message cannot bring an older version back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from datetime import datetime

from stockalert.domain.alerting.engine import AlertEngine
from stockalert.domain.events import AlertRaised
from stockalert.domain.model import (
    DeliveryStatus,
    NotificationRecord,
    Quote,
    Side,
    Subscription,
    Ticker,
)
from stockalert.domain.ports import UnitOfWork
from stockalert.domain.sharding import Shards

log = logging.getLogger(__name__)


class AlertTracker:
    """Owns the AlertEngine of a process: loads it lazily, applies quotes, persists states."""

    def __init__(self, shards: Shards | None = None) -> None:
        """`shards` None: every ticker (the embedded run); else the tickers of the shards
        assigned to this process (none until the first assignment)."""
        self._shards = shards if shards is not None else Shards.everything()
        self._engine: AlertEngine | None = None
        self._lock = threading.RLock()

    @property
    def loaded(self) -> bool:
        """True while an engine is in memory."""
        return self._engine is not None

    def owns(self, ticker: Ticker) -> bool:
        """True when this process evaluates the ticker's quotes."""
        return self._shards.owns(ticker.value)

    def apply(self, quote: Quote, uow: UnitOfWork, now: datetime) -> None:
        """Apply one stored quote of an owned ticker: persist what changed, record alerts."""
        self.apply_many([quote], uow, now)

    def apply_many(self, quotes: Sequence[Quote], uow: UnitOfWork, now: datetime) -> None:
        """Apply stored quotes of owned tickers, in order, in one transaction."""
        with self._lock:
            owned = []
            for quote in quotes:
                if self.owns(quote.ticker):
                    owned.append(quote)
                else:
                    # Its partition is not this instance's shard: a producer that partitions
                    # otherwise than crc32 (see domain/sharding.py), or a message published
                    # to the wrong topic. Its owner applies it from storage when it loads it.
                    log.warning("event=quote_not_owned ticker=%s", quote.ticker)
            if not owned:
                return
            engine = self._engine
            if engine is None:
                self._load(uow, now)  # catches up the stored quotes, these included
                return
            try:
                self._apply_all(engine, owned, uow, now)
            except BaseException:
                self._engine = None  # out of step with storage: rebuild on next use
                raise

    def refresh(self, sub: Subscription, uow: UnitOfWork) -> None:
        """A subscription was created or changed (and committed): take it, and its side
        states, from storage. Storage is the truth, so a late or repeated change message
        never brings back an older version."""
        with self._lock:
            engine = self._engine
            if engine is None or not self.owns(sub.ticker):
                return  # loaded from storage, with the change, when first needed
            sid = sub.subscription_id
            with uow:
                stored = uow.subscriptions.get(sub.user_id, sub.ticker)
                if stored is None or stored.subscription_id != sid:
                    engine.remove(sid)  # removed since (its own message follows)
                    log.debug("event=subscription_refreshed subscription_id=%s gone=1", sid)
                    return
                high = uow.alert_states.get(sid, Side.HIGH)
                low = uow.alert_states.get(sid, Side.LOW)
            engine.upsert(stored, high, low)
            log.debug("event=subscription_refreshed subscription_id=%s", sid)

    def remove(self, subscription_id: str) -> None:
        """A subscription was removed (and committed)."""
        with self._lock:
            if self._engine is not None:
                self._engine.remove(subscription_id)

    def reload(self, uow: UnitOfWork, now: datetime) -> None:
        """Rebuild the engine from storage now (start-up, recovery)."""
        with self._lock:
            self._engine = None
            self._load(uow, now)

    def assign(self, shards: Collection[int], count: int, uow: UnitOfWork, now: datetime) -> None:
        """Start owning the tickers of `shards` (of `count`): load exactly their
        subscriptions, states and marks, then apply their stored quotes after the marks."""
        with self._lock:
            if self._shards.all_keys:
                return  # owns everything already
            if count != self._shards.count:
                self._engine = None  # a new split: load what is owned from scratch
            new = self._shards.assign(shards, count)
            if not new:
                return
            engine = self._engine
            if engine is None:
                self._load(uow, now)
                return
            try:
                self._load_into(engine, new, uow, now)
            except BaseException:
                self._engine = None
                raise

    def revoke(self, shards: Collection[int]) -> None:
        """Stop owning the tickers of `shards` and forget their subscriptions (another
        instance has them)."""
        with self._lock:
            gone = self._shards.revoke(shards)
            if self._engine is not None and gone:
                tickers = self._shards.select(self._engine.tickers(), gone)
                self._engine.drop_tickers(tickers)
                log.info(
                    "event=alert_tickers_revoked shards=%d tickers=%d", len(gone), len(tickers)
                )

    def _load(self, uow: UnitOfWork, now: datetime) -> None:
        engine = AlertEngine()
        shards = None if self._shards.all_keys else self._shards.owned()
        self._load_into(engine, shards, uow, now)
        self._engine = engine

    def _load_into(
        self, engine: AlertEngine, shards: frozenset[int] | None, uow: UnitOfWork, now: datetime
    ) -> None:
        with uow:
            if shards is None:
                subs = uow.subscriptions.all()
                states = uow.alert_states.all()
                marks = uow.alert_progress.all()
                # Only tickers whose newest quote is past the mark have a backlog.
                quoted = {q.ticker: q.quoted_at for q in uow.quotes.latest_quotes()}
                behind = [t for t, at in quoted.items() if t not in marks or at > marks[t]]
            else:
                # The tickers of these shards that have subscriptions or a mark.
                known = {t.value for t in uow.subscriptions.tickers_in_use()}
                known |= {t.value for t in uow.alert_progress.all()}
                tickers = {Ticker(v) for v in self._shards.select(known, shards)}
                subs = uow.subscriptions.for_tickers(tickers)
                states = uow.alert_states.for_tickers(tickers)
                marks = uow.alert_progress.get_many(tickers)
                behind = list(tickers)
            backlog = [q for t in behind for q in uow.quotes.newer_than(t, marks.get(t))]
        engine.load(subs, states)
        for ticker, at in marks.items():
            engine.restore_last_applied(ticker.value, at.timestamp())
        log.info(
            "event=alert_engine_loaded subscriptions=%d tickers=%d backlog_quotes=%d",
            len(subs),
            len(marks) if shards is None else len(tickers),
            len(backlog),
        )
        self._apply_all(engine, sorted(backlog, key=lambda q: q.quoted_at), uow, now)

    @staticmethod
    def _apply_all(
        engine: AlertEngine, quotes: list[Quote], uow: UnitOfWork, now: datetime
    ) -> None:
        with uow:
            marks: dict[Ticker, datetime] = {}
            records = []
            for quote in quotes:
                before = engine.last_applied(quote.ticker.value)
                notifications = engine.apply(quote)
                if engine.last_applied(quote.ticker.value) != before:
                    marks[quote.ticker] = quote.quoted_at
                for notification in notifications:
                    records.append(
                        NotificationRecord(notification, DeliveryStatus.PENDING, created_at=now)
                    )
                    uow.record(AlertRaised(notification))
            changes = engine.drain_changes()
            uow.alert_states.save_many([(c.subscription_id, c.side, c.state) for c in changes])
            uow.alert_progress.save_many(marks)
            uow.notifications.add_new(records)
            uow.commit()

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
partitions and loads or drops them as partitions are assigned or revoked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable
from datetime import datetime

from stockalert.domain.alerting.engine import AlertEngine
from stockalert.domain.events import AlertRaised
from stockalert.domain.model import (
    DeliveryStatus,
    NotificationRecord,
    Quote,
    SideState,
    Subscription,
    Ticker,
)
from stockalert.domain.ports import UnitOfWork

log = logging.getLogger(__name__)


class AlertTracker:
    """Owns the AlertEngine of a process: loads it lazily, applies quotes, persists states."""

    def __init__(self, owned: Iterable[Ticker] | None = None) -> None:
        """`owned` None: every ticker (the embedded run); else only these, until assigned."""
        self._owned: set[Ticker] | None = None if owned is None else set(owned)
        self._engine: AlertEngine | None = None
        self._lock = threading.RLock()

    @property
    def loaded(self) -> bool:
        """True while an engine is in memory."""
        return self._engine is not None

    def owns(self, ticker: Ticker) -> bool:
        """True when this process evaluates the ticker's quotes."""
        return self._owned is None or ticker in self._owned

    def apply(self, quote: Quote, uow: UnitOfWork, now: datetime) -> None:
        """Apply one stored quote of an owned ticker: persist what changed, record alerts."""
        if not self.owns(quote.ticker):
            return
        with self._lock:
            engine = self._engine
            if engine is None:
                self._load(uow, now)  # catches up the stored quotes, this one included
                return
            try:
                self._apply_all(engine, [quote], uow, now)
            except BaseException:
                self._engine = None  # out of step with storage: rebuild on next use
                raise

    def upsert(self, sub: Subscription, high: SideState, low: SideState) -> None:
        """A subscription was created or changed (and committed)."""
        with self._lock:
            if self._engine is not None and self.owns(sub.ticker):
                self._engine.upsert(sub, high, low)

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

    def assign(self, tickers: Collection[Ticker], uow: UnitOfWork, now: datetime) -> None:
        """Start owning `tickers`: load exactly their subscriptions, states and marks, then
        apply their stored quotes after the marks."""
        with self._lock:
            if self._owned is None:
                return  # owns everything already
            new = set(tickers) - self._owned
            self._owned |= new
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

    def revoke(self, tickers: Collection[Ticker]) -> None:
        """Stop owning `tickers` and forget their subscriptions (another instance has them)."""
        with self._lock:
            if self._owned is None:
                raise ValueError("an alert tracker that owns every ticker cannot revoke some")
            self._owned -= set(tickers)
            if self._engine is not None:
                self._engine.drop_tickers({t.value for t in tickers})
            log.info("event=alert_tickers_revoked tickers=%d", len(tickers))

    def _load(self, uow: UnitOfWork, now: datetime) -> None:
        engine = AlertEngine()
        self._load_into(engine, self._owned, uow, now)
        self._engine = engine

    def _load_into(
        self, engine: AlertEngine, tickers: set[Ticker] | None, uow: UnitOfWork, now: datetime
    ) -> None:
        with uow:
            if tickers is None:
                subs = uow.subscriptions.all()
                states = uow.alert_states.all()
                marks = uow.alert_progress.all()
                # Only tickers whose newest quote is past the mark have a backlog.
                quoted = {q.ticker: q.quoted_at for q in uow.quotes.latest_quotes()}
                behind = [t for t, at in quoted.items() if t not in marks or at > marks[t]]
            else:
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
            len(marks) if tickers is None else len(tickers),
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
            for change in engine.drain_changes():
                uow.alert_states.save(change.subscription_id, change.side, change.state)
            for ticker, at in marks.items():
                uow.alert_progress.save(ticker, at)
            uow.notifications.add_new(records)
            uow.commit()

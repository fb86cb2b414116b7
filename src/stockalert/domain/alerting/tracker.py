"""The alert engine kept in step with the write model, and rebuilt from it when in doubt.

The engine lives in memory; the side states live in the database. If persisting the effect
of a quote fails (database outage), the engine is ahead of the database and the alerts of
that quote were never released. The tracker then forgets the engine; the next use rebuilds
it from the stored subscriptions and states and re-applies the newest stored quote of every
ticker. Applying a quote twice is harmless (the state machine is idempotent for the same
price and time, and notification ids are deterministic), so nothing is lost or repeated.
"""

from __future__ import annotations

import logging
import threading

from stockalert.domain.alerting.engine import AlertEngine
from stockalert.domain.events import AlertRaised
from stockalert.domain.model import Quote, SideState, Subscription
from stockalert.domain.ports import UnitOfWork

log = logging.getLogger(__name__)


class AlertTracker:
    """Owns the AlertEngine of a process: loads it lazily, applies quotes, persists states."""

    def __init__(self) -> None:
        self._engine: AlertEngine | None = None
        self._lock = threading.RLock()

    @property
    def loaded(self) -> bool:
        """True while an engine is in memory."""
        return self._engine is not None

    def apply(self, quote: Quote, uow: UnitOfWork) -> None:
        """Apply one quote: persist changed sides and record an AlertRaised per alert."""
        with self._lock:
            engine = self._engine
            if engine is None:
                self._load(uow)  # the load re-applies the newest quotes, this one included
                return
            try:
                self._apply_all(engine, [quote], uow)
            except BaseException:
                self._engine = None  # out of step with the database: rebuild on next use
                raise

    def upsert(self, sub: Subscription, high: SideState, low: SideState) -> None:
        """A subscription was created or changed (and committed)."""
        with self._lock:
            if self._engine is not None:
                self._engine.upsert(sub, high, low)

    def remove(self, subscription_id: str) -> None:
        """A subscription was removed (and committed)."""
        with self._lock:
            if self._engine is not None:
                self._engine.remove(subscription_id)

    def reload(self, uow: UnitOfWork) -> None:
        """Rebuild the engine from the database now (start-up, recovery)."""
        with self._lock:
            self._engine = None
            self._load(uow)

    def _load(self, uow: UnitOfWork) -> None:
        engine = AlertEngine()
        with uow:
            subs = uow.subscriptions.all()
            states = uow.alert_states.all()
            latest = uow.quotes.latest_quotes()
        engine.load(subs, states)
        log.info("event=alert_engine_loaded subscriptions=%d tickers=%d", len(subs), len(latest))
        self._apply_all(engine, sorted(latest, key=lambda q: q.quoted_at), uow)
        self._engine = engine

    @staticmethod
    def _apply_all(engine: AlertEngine, quotes: list[Quote], uow: UnitOfWork) -> None:
        with uow:
            for quote in quotes:
                for notification in engine.apply(quote):
                    uow.record(AlertRaised(notification))
            for change in engine.drain_changes():
                uow.alert_states.save(change.subscription_id, change.side, change.state)
            uow.commit()

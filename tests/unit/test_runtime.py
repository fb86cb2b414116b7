"""What every process shares (entrypoints/runtime.py): a role keeps running through a failed
handler, and stops when told."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from stockalert.containers import Collector
from stockalert.domain.commands import (
    LoadAlerts,
    RecordQuotes,
    RegisterUser,
    RetryPendingNotifications,
    SubscriptionSpec,
)
from stockalert.domain.model import DeliveryStatus, Notification, Quote, Ticker
from stockalert.domain.ports import MailOutcome
from stockalert.entrypoints.runtime import Loop, Plan, serve
from tests.wiring import Storage


class BrokenMailer:
    """A mailer with a bug: it raises instead of reporting an outcome."""

    def send_many(self, notifications: Sequence[Notification]) -> Iterator[MailOutcome]:
        raise RuntimeError("a bug in the mailer")
        yield None  # a generator, like every mailer


def test_a_failing_handler_at_start_is_logged_and_the_role_keeps_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The alert a start-up load raises cannot be mailed (a bug): the process logs it, starts
    its loops anyway, keeps the alert PENDING, and stops cleanly when halted."""
    storage = Storage()
    storage.process().bus().handle(
        RegisterUser("r1", "ann@example.com", "password123", (SubscriptionSpec("AAPL", 100.0),))
    )
    storage.clock.advance(60)
    quote = Quote(Ticker("AAPL"), 101.0, storage.clock.now())
    storage.process(Collector).bus().handle(RecordQuotes((quote,)))  # stored, not applied
    container = storage.process(delivery__mailer=BrokenMailer())
    plan = Plan(
        "embedded",
        loops=[Loop("notifier", (RetryPendingNotifications(),), 0.05)],
        startup=(LoadAlerts(),),
    )
    halt = threading.Event()
    caplog.set_level(logging.INFO)
    runner = threading.Thread(target=serve, args=(container, plan, halt))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while "event=started" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.01)
    finally:
        halt.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    assert "event=startup_incomplete command=LoadAlerts" in caplog.text
    assert "event=stopped role=embedded" in caplog.text
    (row,) = storage.store.notifications.values()
    assert row.status is DeliveryStatus.PENDING

"""Property: a restart (the alert engine reloaded from storage) changes nothing.

The same random program of subscription commands and quotes runs twice through the real bus
over in-memory storage: once in one process, once with restarts inserted — the process
"dies" (its container and engine are dropped) and a new one starts on the same storage and
loads the engine (`LoadAlerts`). Both runs must e-mail exactly the same notifications and
leave exactly the same stored state: a reload never re-applies a quote a side was already
evaluated against, and never misses one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from stockalert.adapters.memory.fakes import ManualClock
from stockalert.domain.commands import LoadAlerts, RecordQuotes, RegisterUser, SetSubscription
from stockalert.domain.commands import RemoveSubscription as Remove
from stockalert.domain.errors import DomainError
from stockalert.domain.model import Notification, Quote, Ticker
from stockalert.domain.views import UserRegistered
from tests.wiring import Storage

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
USERS = ["ann@example.com", "bob@example.com"]
TICKERS = ["AAPL", "MSFT"]

prices = st.sampled_from([90.0, 95.0, 99.5, 100.0, 100.5, 101.0, 105.0, 110.0])
thresholds = st.none() | st.sampled_from([95.0, 100.0, 105.0])

# ("set", user, ticker, high, low, rearm, cooldown, remind), ("remove", user, ticker),
# ("quote", ticker, price, seconds after the previous quote).
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("set"),
            st.integers(0, len(USERS) - 1),
            st.integers(0, len(TICKERS) - 1),
            thresholds,
            thresholds,
            st.sampled_from([None, 0.0, 1.0, 5.0]),
            st.sampled_from([None, 0.0, 120.0]),
            st.sampled_from([None, 0.0, 60.0]),
        ),
        st.tuples(
            st.just("remove"), st.integers(0, len(USERS) - 1), st.integers(0, len(TICKERS) - 1)
        ),
        st.tuples(
            st.just("quote"),
            st.integers(0, len(TICKERS) - 1),
            prices,
            st.sampled_from([30, 60, 90]),
        ),
    ),
    max_size=40,
)


class Run(Storage):
    """One history on one storage; `restart()` plays a process that stops and starts."""

    def __init__(self) -> None:
        super().__init__(ManualClock(T0))
        self.requests = iter(range(1, 10_000))
        self.restart()
        self.users = [self._register(email) for email in USERS]

    def restart(self) -> None:
        """A new process on the same storage: a fresh container, the engine loaded."""
        self.container = self.process()
        self.container.bus().handle(LoadAlerts())

    def _register(self, email: str) -> str:
        reply = self.container.bus().handle(RegisterUser(f"r{email}", email, "password123"))
        assert isinstance(reply, UserRegistered)
        return reply.user_id

    def play(self, op: tuple[Any, ...]) -> None:
        bus = self.container.bus()
        request = f"req{next(self.requests)}"
        try:
            if op[0] == "set":
                _, user, ticker, high, low, rearm, cooldown, remind = op
                bus.handle(
                    SetSubscription(
                        request,
                        self.users[user],
                        TICKERS[ticker],
                        high_value=high,
                        low_value=low,
                        rearm_percent=rearm,
                        cooldown_s=cooldown,
                        remind_every_s=remind,
                    )
                )
            elif op[0] == "remove":
                bus.handle(Remove(request, self.users[op[1]], TICKERS[op[2]]))
            else:
                _, ticker, price, step = op
                self.clock.advance(step)
                bus.handle(RecordQuotes((Quote(Ticker(TICKERS[ticker]), price, self.clock.now()),)))
        except DomainError:
            pass  # e.g. high <= low, or removing what is not watched: the same in both runs

    def outcome(self) -> tuple[list[Notification], dict[str, dict[Any, Any]]]:
        """The e-mails in the order of their quotes and the stored state. The e-mails one quote
        causes (different subscriptions) come in no particular order: the engine breaks a tie
        between equal thresholds by insertion order, which a reload does not keep."""
        mails = sorted(self.mailer.sent, key=lambda n: (n.quoted_at, n.notification_id))
        return mails, self.store.snapshot(without=("requests",))


@settings(max_examples=100, deadline=None)
@given(ops=operations, restarts=st.lists(st.integers(0, 40), min_size=1, max_size=3))
@example(
    # The bug a restart had: a threshold changed and changed back re-arms the side; the
    # reload then re-applied the newest quote (already evaluated) and mailed it again.
    ops=[
        ("set", 0, 0, 100.0, None, None, None, None),
        ("quote", 0, 101.0, 60),
        ("set", 0, 0, 105.0, None, None, None, None),
        ("set", 0, 0, 100.0, None, None, None, None),
    ],
    restarts=[4],
)
def test_a_restart_anywhere_sends_exactly_the_notifications_of_a_run_without_it(
    ops: list[tuple[Any, ...]], restarts: list[int]
) -> None:
    """Same program, with and without restarts: the same e-mails, the same stored state."""
    straight = Run()
    for op in ops:
        straight.play(op)

    restarted = Run()
    for index, op in enumerate(ops):
        if index in restarts:
            restarted.restart()
        restarted.play(op)
    if len(ops) in restarts:
        restarted.restart()

    assert restarted.outcome() == straight.outcome()


def test_the_restart_bug_example_mails_the_crossing_once() -> None:
    """The scenario of the re-sent alert, spelled out: one e-mail before and after."""
    run = Run()
    for op in [
        ("set", 0, 0, 100.0, None, None, None, None),
        ("quote", 0, 101.0, 60),
        ("set", 0, 0, 105.0, None, None, None, None),
        ("set", 0, 0, 100.0, None, None, None, None),
    ]:
        run.play(op)
    assert len(run.mailer.sent) == 1
    run.restart()
    assert len(run.mailer.sent) == 1
    run.play(("quote", 0, 101.5, 60))  # the next quote is evaluated against the new threshold
    assert [n.episode for n in run.mailer.sent] == [1, 2]

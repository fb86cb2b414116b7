"""Concurrent duplicates through the bus over real SQL databases (SQLite and MariaDB).

Twenty threads released together by a barrier send the same (or competing) commands; the
request ledger and the unique keys must make them execute once, and every thread must get a
proper answer: the stored reply, ALREADY_EXISTS, or the winner's row updated.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from stockalert.adapters.sql import tables
from stockalert.domain.commands import Command, RegisterUser, SetSubscription
from stockalert.domain.errors import AlreadyExists, ErrorCode
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.views import SubscriptionView, UserRegistered
from tests.integration.conftest import sql_engine_for
from tests.wiring import build_container, sql_config

THREADS = 20
PASSWORD = "password123"


@pytest.fixture(params=["sqlite", "mariadb"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    """A migrated, empty database of the backend."""
    return sql_engine_for(str(request.param), tmp_path, request)


@pytest.fixture
def bus(engine: Engine) -> Iterator[MessageBus]:
    """The full bus over the database, with deterministic fakes for time, ids and hashing."""
    url = engine.url.render_as_string(hide_password=False)
    container = build_container(config=sql_config(url))
    try:
        yield container.bus()
    finally:
        container.shutdown_resources()


def all_at_once(bus: MessageBus, commands: list[Command]) -> list[tuple[str, Any]]:
    """Handle each command in its own thread, all released together; ("ok"|"error", value)."""
    barrier = threading.Barrier(len(commands))

    def send(command: Command) -> tuple[str, Any]:
        barrier.wait(timeout=30)
        try:
            return ("ok", bus.handle(command))
        except Exception as err:  # noqa: BLE001 - every outcome is inspected by the test
            return ("error", err)

    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(send, commands))


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def register(bus: MessageBus, email: str = "alice@example.com") -> str:
    reply = bus.handle(RegisterUser("setup-register", email, PASSWORD))
    assert isinstance(reply, UserRegistered)
    return reply.user_id


def successes(outcomes: list[tuple[str, Any]]) -> list[Any]:
    errors = [value for kind, value in outcomes if kind == "error"]
    assert errors == [], f"{len(errors)} of {len(outcomes)} failed: {errors[:3]!r}"
    return [value for _, value in outcomes]


def test_the_same_set_subscription_sent_by_twenty_threads_creates_one_row_and_one_reply(
    bus: MessageBus, engine: Engine
) -> None:
    """Twenty copies of one SetSubscription (same request id) store one row, answer alike."""
    user_id = register(bus)
    command = SetSubscription("same-request", user_id, "AAPL", high_value=190.0)

    replies = successes(all_at_once(bus, [command] * THREADS))

    assert count(engine, tables.subscriptions) == 1
    assert all(isinstance(reply, SubscriptionView) for reply in replies)
    assert all(reply == replies[0] for reply in replies)
    assert replies[0].ticker == "AAPL"
    assert replies[0].high_value == 190.0
    c = tables.request_ledger.c
    assert count(engine, tables.request_ledger, c.method == "SetSubscription") == 1


def test_the_same_registration_sent_by_twenty_threads_creates_one_user(
    bus: MessageBus, engine: Engine
) -> None:
    """Twenty copies of one RegisterUser (same request id) create one user, one user id."""
    command = RegisterUser("same-request", "bob@example.com", PASSWORD)

    replies = successes(all_at_once(bus, [command] * THREADS))

    assert count(engine, tables.users) == 1
    assert all(isinstance(reply, UserRegistered) for reply in replies)
    assert {reply.user_id for reply in replies} == {replies[0].user_id}
    with engine.connect() as conn:
        stored = conn.execute(select(tables.users.c.user_id, tables.users.c.email)).all()
    assert [tuple(row) for row in stored] == [(replies[0].user_id, "bob@example.com")]


def test_twenty_registrations_of_one_email_with_different_request_ids_let_exactly_one_win(
    bus: MessageBus, engine: Engine
) -> None:
    """One of twenty competing registrations of an e-mail wins; the others get ALREADY_EXISTS."""
    commands: list[Command] = [
        RegisterUser(f"request-{n}", "carol@example.com", PASSWORD) for n in range(THREADS)
    ]

    outcomes = all_at_once(bus, commands)

    won = [value for kind, value in outcomes if kind == "ok"]
    lost = [value for kind, value in outcomes if kind == "error"]
    assert len(won) == 1, outcomes
    assert isinstance(won[0], UserRegistered)
    unexpected = [err for err in lost if not isinstance(err, AlreadyExists)]
    assert unexpected == [], f"expected only AlreadyExists, got {unexpected[:3]!r}"
    assert len(lost) == THREADS - 1
    assert all(err.code is ErrorCode.ALREADY_EXISTS for err in lost)
    with engine.connect() as conn:
        users = conn.execute(select(tables.users.c.user_id)).scalars().all()
    assert users == [won[0].user_id]
    # Every request got its own stored reply: a retry of any of them answers the same.
    c = tables.request_ledger.c
    assert count(engine, tables.request_ledger, c.method == "RegisterUser") == THREADS
    loser = next(cmd for cmd, (kind, _) in zip(commands, outcomes, strict=True) if kind != "ok")
    with pytest.raises(AlreadyExists):
        bus.handle(loser)


def test_twenty_set_subscriptions_of_one_new_ticker_with_different_request_ids_all_succeed(
    bus: MessageBus, engine: Engine
) -> None:
    """Twenty competing SetSubscription of a new ticker leave one row; the losers update it."""
    user_id = register(bus)
    # Several rounds, one new ticker each: a race lost only now and then still shows up.
    tickers = ["MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "ORCL", "INTC"]
    failures: dict[str, list[Exception]] = {}
    for ticker in tickers:
        commands: list[Command] = [
            SetSubscription(f"{ticker}-{n}", user_id, ticker, high_value=400.0 + n)
            for n in range(THREADS)
        ]
        outcomes = all_at_once(bus, commands)

        errors = [value for kind, value in outcomes if kind == "error"]
        if errors:
            failures[ticker] = errors
            continue
        replies = [value for _, value in outcomes]
        c = tables.subscriptions.c
        assert count(engine, tables.subscriptions, c.ticker == ticker) == 1
        with engine.connect() as conn:
            row = conn.execute(select(tables.subscriptions).where(c.ticker == ticker)).one()
        assert all(isinstance(reply, SubscriptionView) for reply in replies)
        assert {reply.subscription_id for reply in replies} == {row.subscription_id}
        assert {reply.ticker for reply in replies} == {ticker}
        # The row holds the thresholds of one of the commands; each reply shows its own.
        assert row.high_value in {400.0 + n for n in range(THREADS)}
        assert sorted(reply.high_value for reply in replies) == [400.0 + n for n in range(THREADS)]

    assert failures == {}, {
        ticker: f"{len(errors)} of {THREADS} failed, e.g. {errors[0]!r} "
        f"caused by {errors[0].__cause__!r}"
        for ticker, errors in failures.items()
    }
    assert count(engine, tables.subscriptions) == len(tickers)
    c = tables.request_ledger.c
    assert count(engine, tables.request_ledger, c.method == "SetSubscription") == (
        THREADS * len(tickers)
    )

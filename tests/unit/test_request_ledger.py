"""The request ledger (`domain/request_ledger.py`): every idempotent command runs at most once
per (method, user, request id); replays answer the stored reply or failure."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from stockalert.adapters.memory.storage import MemoryStore
from stockalert.domain.commands import (
    RegisterUser,
    RemoveSubscription,
    SetSubscription,
    SubscriptionSpec,
)
from stockalert.domain.errors import ErrorCode, InvalidArgument, NotFound
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.views import Done, SubscriptionView
from tests.unit.helpers import GOOD_SECRET, only_subscription, register, set_sub, subscriptions


def test_replayed_registration_returns_the_identical_reply_and_creates_one_user(
    bus: MessageBus, store: MemoryStore
) -> None:
    """The same RegisterUser request id replayed answers the first reply and adds no user."""
    command = RegisterUser("r1", "alice@example.com", GOOD_SECRET, (SubscriptionSpec("AAPL"),))

    first = bus.handle(command)
    second = bus.handle(command)

    assert second == first
    assert len(store.users) == 1
    assert len(store.subscriptions) == 1


def test_a_stored_failure_is_replayed_even_after_the_state_changed(
    bus: MessageBus, store: MemoryStore
) -> None:
    """A request id whose first run failed keeps failing the same way; a new id executes."""
    user_id = register(bus)
    remove = RemoveSubscription("rm1", user_id, "AAPL")
    with pytest.raises(NotFound) as first:
        bus.handle(remove)
    assert (first.value.code, first.value.field) == (ErrorCode.NOT_FOUND, "ticker")
    set_sub(bus, user_id, "s1", high_value=100)

    with pytest.raises(NotFound) as replayed:
        bus.handle(remove)

    assert replayed.value == first.value
    assert [v.ticker for v in subscriptions(bus, user_id)] == ["AAPL"]
    assert bus.handle(RemoveSubscription("rm2", user_id, "AAPL")) == Done()
    assert subscriptions(bus, user_id) == []
    assert store.alert_states == {}


def test_same_request_id_for_different_command_types_executes_both(bus: MessageBus) -> None:
    """The ledger key includes the method: SetSubscription r1 and RemoveSubscription r1 both run."""
    user_id = register(bus)

    set_sub(bus, user_id, "r1", high_value=100)
    removed = bus.handle(RemoveSubscription("r1", user_id, "AAPL"))

    assert removed == Done()
    assert subscriptions(bus, user_id) == []


def test_same_request_id_by_two_users_executes_for_each(
    bus: MessageBus, store: MemoryStore
) -> None:
    """The ledger key includes the user: one request id used by two users runs twice."""
    alice = register(bus, "alice@example.com")
    bob = register(bus, "bob@example.com")

    alice_view = set_sub(bus, alice, "r1", high_value=100)
    bob_view = set_sub(bus, bob, "r1", high_value=100)

    assert alice_view.subscription_id != bob_view.subscription_id
    assert len(store.subscriptions) == 2
    assert only_subscription(bus, alice) == alice_view
    assert only_subscription(bus, bob) == bob_view


def test_rejects_a_reused_request_id_with_a_different_payload(
    bus: MessageBus, store: MemoryStore
) -> None:
    """Same method, user and request id but other content is INVALID_ARGUMENT on "request_id"."""
    user_id = register(bus)
    set_sub(bus, user_id, "r1", high_value=100)
    before = store.snapshot(without=("requests",))

    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(SetSubscription("r1", user_id, "AAPL", high_value=120))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == "request_id"
    assert store.snapshot(without=("requests",)) == before
    assert only_subscription(bus, user_id).high_value == 100


def test_concurrent_duplicates_execute_once_and_all_get_the_same_reply(
    bus: MessageBus, store: MemoryStore
) -> None:
    """20 threads sending the same SetSubscription at once create one subscription, 20 replies."""
    user_id = register(bus)
    command = SetSubscription("r1", user_id, "AAPL", high_value=200, low_value=100)
    start = threading.Barrier(20, timeout=10)

    def send() -> object:
        start.wait()
        return bus.handle(command)

    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = [f.result(timeout=10) for f in [pool.submit(send) for _ in range(20)]]

    assert len(replies) == 20
    assert all(reply == replies[0] for reply in replies)
    assert isinstance(replies[0], SubscriptionView)
    assert len(store.subscriptions) == 1
    assert subscriptions(bus, user_id) == [replies[0]]

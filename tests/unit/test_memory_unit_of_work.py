"""The in-memory unit of work is a real transaction: commit, rollback, savepoints, events."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from stockalert.adapters.memory.storage import MemoryStore, MemoryUnitOfWork
from stockalert.domain.events import UserDeleted
from stockalert.domain.model import Email, User


def user(n: int) -> User:
    return User(f"u{n}", Email(f"user{n}@example.com"), "hash", datetime(2026, 1, 1, tzinfo=UTC))


def test_uncommitted_work_is_rolled_back_on_exit() -> None:
    """Leaving the block without commit() undoes every write."""
    store = MemoryStore()
    with MemoryUnitOfWork(store) as uow:
        uow.users.add(user(1))
    assert store.users == {}
    assert store.user_by_email == {}


def test_committed_work_stays_and_releases_its_events_once() -> None:
    """Events recorded in a committed transaction come out of collect_events() once."""
    store = MemoryStore()
    uow = MemoryUnitOfWork(store)
    with uow:
        uow.users.add(user(1))
        uow.record(UserDeleted("u0"))
        uow.commit()
    assert set(store.users) == {"u1"}
    assert list(uow.collect_events()) == [UserDeleted("u0")]
    assert list(uow.collect_events()) == []


def test_an_exception_rolls_back_and_drops_events() -> None:
    """A failure inside the block leaves the store as it was and releases no event."""
    store = MemoryStore()
    uow = MemoryUnitOfWork(store)
    with uow:
        uow.users.add(user(1))
        uow.commit()

    def failing_transaction() -> None:
        with uow:
            uow.users.delete("u1")
            uow.users.add(user(2))
            uow.record(UserDeleted("u1"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing_transaction()
    assert set(store.users) == {"u1"}
    assert list(uow.collect_events()) == []


def test_a_failed_savepoint_undoes_only_its_own_writes_and_events() -> None:
    """Writes before the savepoint survive when the savepoint fails."""
    store = MemoryStore()
    uow = MemoryUnitOfWork(store)

    def failing_savepoint() -> None:
        with uow.savepoint():
            uow.users.add(user(2))
            uow.record(UserDeleted("u2"))
            raise ValueError("inner")

    with uow:
        uow.users.add(user(1))
        with pytest.raises(ValueError, match="inner"):
            failing_savepoint()
        uow.commit()
    assert set(store.users) == {"u1"}
    assert list(uow.collect_events()) == []


def test_repositories_refuse_use_outside_a_transaction() -> None:
    """Writing without `with uow:` is a programming error, not a silent write."""
    uow = MemoryUnitOfWork(MemoryStore())
    with pytest.raises(RuntimeError, match="with"):
        uow.users.add(user(1))


def test_transactions_are_serialised_across_threads() -> None:
    """A second thread's transaction waits for the first to end (the at-most-once basis)."""
    store = MemoryStore()
    entered, release = threading.Event(), threading.Event()
    seen: list[set[str]] = []

    def first() -> None:
        with MemoryUnitOfWork(store) as uow:
            uow.users.add(user(1))
            entered.set()
            release.wait(5)
            uow.commit()

    def second() -> None:
        entered.wait(5)
        with MemoryUnitOfWork(store):
            seen.append(set(store.users))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    entered.wait(5)
    release.set()
    for thread in threads:
        thread.join(5)
    assert seen == [{"u1"}]

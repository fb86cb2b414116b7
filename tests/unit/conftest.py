"""Fixtures: the real composition root with in-memory adapters and deterministic fakes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest

from stockalert.adapters.memory.fakes import ManualClock, MemoryMailer
from stockalert.adapters.memory.storage import MemoryStore
from stockalert.domain.messagebus import MessageBus
from tests.wiring import build_container


@pytest.fixture
def container() -> Iterator[Any]:
    """The embedded container with a manual clock, readable ids and a fast hasher."""
    container = build_container()
    yield container
    container.reset_override()


@pytest.fixture
def bus(container: Any) -> MessageBus:
    return cast("MessageBus", container.bus())


@pytest.fixture
def mailer(container: Any) -> MemoryMailer:
    return cast("MemoryMailer", container.delivery.mailer())


@pytest.fixture
def clock(container: Any) -> ManualClock:
    return cast("ManualClock", container.core.clock())


@pytest.fixture
def store(container: Any) -> MemoryStore:
    return cast("MemoryStore", container.core.store())

"""Fixtures: the real composition root with in-memory adapters and deterministic fakes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stockalert.adapters.memory import (
    InsecureFastHasher,
    ManualClock,
    MemoryMailer,
    MemoryStore,
    SequentialIds,
)
from stockalert.containers import Container, in_memory_config
from stockalert.domain.messagebus import MessageBus


@pytest.fixture
def container() -> Iterator[Container]:
    """The production container with a manual clock, readable ids and a fast hasher."""
    container = Container()
    container.config.from_dict(in_memory_config())
    container.clock.override(ManualClock())
    container.ids.override(SequentialIds())
    container.hasher.override(InsecureFastHasher())
    yield container
    container.reset_override()


@pytest.fixture
def bus(container: Container) -> MessageBus:
    return container.bus()


@pytest.fixture
def mailer(container: Container) -> MemoryMailer:
    return container.mailer()


@pytest.fixture
def clock(container: Container) -> ManualClock:
    return container.clock()


@pytest.fixture
def store(container: Container) -> MemoryStore:
    return container.store()

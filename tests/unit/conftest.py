"""Fixtures: the real composition root with in-memory adapters and deterministic fakes."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest

if TYPE_CHECKING:
    import grpc

    from stockalert.adapters.grpc.server import RunningServer
    from stockalert.adapters.memory.fakes import ManualClock, MemoryMailer
    from stockalert.adapters.memory.storage import MemoryStore
    from stockalert.domain.messagebus import MessageBus


def pytest_collection_finish(session: pytest.Session) -> None:
    """What importing and collecting created lives until the end: keep the garbage collector
    from scanning it again in every full collection while the tests run."""
    gc.collect()
    gc.freeze()


@pytest.fixture
def container() -> Iterator[Any]:
    """The embedded container with a manual clock, readable ids and a fast hasher."""
    # Imported here: pytest-xdist's controller loads this file too, and runs no test.
    from tests.wiring import build_container

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


@pytest.fixture
def server(container: Any) -> Iterator[RunningServer]:
    """A real gRPC server on an ephemeral port over the test container's bus and clock."""
    from stockalert.adapters.grpc.server import start, stop

    running = start(container.bus(), "127.0.0.1:0")
    yield running
    stop(running, grace=0)


@pytest.fixture
def address(server: RunningServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture
def channel(address: str) -> Iterator[grpc.Channel]:
    import grpc

    with grpc.insecure_channel(address) as chan:
        yield chan

"""The real 3-node Kafka cluster of scripts/dev-services, for integration tests.

Every test gets topics of its own (a unique prefix, created by the kafka-admin code and
deleted afterwards), so tests never see each other's messages. Tests that stop a broker take
the cluster for themselves: every Kafka test holds a shared lock on a file of .state/, the
broker-fault tests an exclusive one, so that no other test runs against two brokers by
surprise (pytest-xdist workers are separate processes).
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stockalert.adapters.kafka.admin import KafkaAdministrator
from stockalert.adapters.kafka.topics import Topics
from tests.integration import endpoints

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / ".state" / "kafka-tests.lock"


def service_setting(name: str) -> str:
    """A variable of .state/services.env (or of the compose stack under --compose), or skip
    (fail under CI) when it is not set."""
    value = endpoints.setting(name)
    if not value:
        message = f"{name} is not set: run scripts/dev-services start (or pytest --compose)"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI must not skip integration tests)")
        pytest.skip(message)
    return value


def kafka_bootstrap() -> str:
    """STOCKALERT_KAFKA_BOOTSTRAP, or skip (fail under CI) when no cluster is configured."""
    return service_setting("STOCKALERT_KAFKA_BOOTSTRAP")


@contextmanager
def cluster_lock(exclusive: bool) -> Iterator[None]:
    """Shared: the cluster must stay whole meanwhile; exclusive: this test may break it."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def dev_services(action: str, node: str) -> None:
    """scripts/dev-services kill-broker N / start-broker N (the same on the compose stack
    under --compose)."""
    endpoints.control(action, node)


@contextmanager
def fresh_topics(bootstrap: str, **settings: int) -> Iterator[Topics]:
    """The topics of a unique prefix, created for the test and deleted after it."""
    topics = Topics(prefix=f"test-{uuid.uuid4().hex[:10]}.", **settings)
    admin = KafkaAdministrator(bootstrap)
    admin.ensure_topics(topics.specs())
    try:
        yield topics
    finally:
        admin.delete_topics([spec.name for spec in topics.specs()])

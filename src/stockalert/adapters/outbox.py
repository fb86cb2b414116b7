"""The transactional outbox: events other processes must hear of are written, as messages, in
the same database transaction as the change that raised them; a relay publishes them.

A unit of work given an `OutboxEncoder` writes one row per encodable event it commits (events
of a rolled-back savepoint or transaction are never written). `OutboxStore` is what the relay
needs of the database: the rows not yet published, the checkpoints (per topic partition, the
offset after the last message the relay knows it published) and a lease, so that one relay at
a time publishes (in id order, which the recovery after a crash relies on). See ADR 10.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Protocol

import attrs

from stockalert.domain.events import Event


@attrs.frozen
class OutboxMessage:
    """A message to publish: topic, key and value (an encoded event)."""

    topic: str
    key: bytes
    value: bytes


@attrs.frozen
class OutboxRow:
    """A committed, not yet published message and its outbox id (ascending with the writes)."""

    outbox_id: int
    message: OutboxMessage


OutboxEncoder = Callable[[Event], OutboxMessage | None]
# (topic, partition) -> the offset after the last message the relay knows it published there
Checkpoints = Mapping[tuple[str, int], int]


class OutboxStore(Protocol):
    """The outbox as the relay sees it."""

    def pending(self, limit: int) -> list[OutboxRow]:
        """Up to `limit` rows not yet published, oldest first."""
        ...

    def checkpoints(self) -> dict[tuple[str, int], int]:
        """Every stored checkpoint."""
        ...

    def publish_done(self, outbox_ids: Collection[int], checkpoints: Checkpoints) -> None:
        """In one transaction: the rows are published (removed) and the checkpoints move."""
        ...

    def take_lease(self, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Hold (or renew) the lease `name` until now + ttl, unless another owner holds an
        unexpired one; True when `owner` holds it."""
        ...

"""The transactional outbox in SQL: rows written by the unit of work, read and removed by the
relay, with the relay's checkpoints and its lease (see adapters/outbox.py, ADR 10)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from stockalert.adapters.outbox import Checkpoints, OutboxMessage, OutboxRow
from stockalert.adapters.sql import tables as t


def write_messages(conn: Connection, messages: Sequence[OutboxMessage], now: datetime) -> None:
    """Add outbox rows in the caller's transaction (the unit of work's, at its commit)."""
    conn.execute(
        insert(t.outbox),
        [
            {
                "topic": m.topic,
                "message_key": m.key.decode(),
                "message_value": m.value.decode(),
                "created_at": now,
            }
            for m in messages
        ],
    )


def _save_checkpoints(conn: Connection, checkpoints: Checkpoints) -> None:
    c = t.outbox_checkpoints.c
    for (topic, partition), offset in checkpoints.items():
        changed = conn.execute(
            update(t.outbox_checkpoints)
            .where(c.topic == topic, c.kafka_partition == partition)
            .values(next_offset=offset)
        ).rowcount
        if not changed:  # one relay at a time (the lease): no concurrent insert
            conn.execute(
                insert(t.outbox_checkpoints).values(
                    topic=topic, kafka_partition=partition, next_offset=offset
                )
            )


class SqlOutboxStore:
    """OutboxStore over a SQLAlchemy engine."""

    def __init__(self, engine: Engine, now: Callable[[], datetime]) -> None:
        self._engine = engine
        self._now = now

    def pending(self, limit: int) -> list[OutboxRow]:
        o = t.outbox.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(o.outbox_id, o.topic, o.message_key, o.message_value)
                .order_by(o.outbox_id)
                .limit(limit)
            ).all()
        return [
            OutboxRow(
                row.outbox_id,
                OutboxMessage(row.topic, row.message_key.encode(), row.message_value.encode()),
            )
            for row in rows
        ]

    def checkpoints(self) -> dict[tuple[str, int], int]:
        c = t.outbox_checkpoints.c
        with self._engine.connect() as conn:
            rows = conn.execute(select(c.topic, c.kafka_partition, c.next_offset)).all()
        return {(row.topic, row.kafka_partition): row.next_offset for row in rows}

    def publish_done(self, outbox_ids: Collection[int], checkpoints: Checkpoints) -> None:
        with self._engine.begin() as conn:
            if outbox_ids:
                conn.execute(delete(t.outbox).where(t.outbox.c.outbox_id.in_(sorted(outbox_ids))))
            _save_checkpoints(conn, checkpoints)

    def take_lease(self, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
        c = t.leases.c
        with self._engine.begin() as conn:
            taken = conn.execute(
                update(t.leases)
                .where(c.name == name, or_(c.owner == owner, c.expires_at < now))
                .values(owner=owner, expires_at=now + ttl)
            ).rowcount
            if taken:
                return True
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(t.leases).values(name=name, owner=owner, expires_at=now + ttl)
                    )
            except IntegrityError:
                return False  # another owner holds an unexpired lease
            return True

"""The relational schema (SQLAlchemy Core), for MySQL/MariaDB and SQLite.

Explicit string lengths (MySQL needs them for indexes), DOUBLE for prices (MySQL FLOAT is
4 bytes), UTC datetimes with microseconds stored naive and returned aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from stockalert.domain.model import CORRELATION_ID_LENGTH

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

EMAIL_LENGTH = 254
TICKER_LENGTH = 17  # 16 symbol characters and an optional leading ^
ID_LENGTH = 64


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in a naive DATETIME(6) / SQLite column."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


users = Table(
    "users",
    metadata,
    Column("user_id", String(ID_LENGTH), primary_key=True),
    Column("email", String(EMAIL_LENGTH), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    # Raised at each logout; a token of an older version is refused (0007).
    Column("session_version", Integer(), nullable=False, server_default="0"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscription_id", String(ID_LENGTH), primary_key=True),
    Column(
        "user_id",
        String(ID_LENGTH),
        ForeignKey("users.user_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("ticker", String(TICKER_LENGTH), nullable=False, index=True),
    Column("high_value", Double(), nullable=True),
    Column("low_value", Double(), nullable=True),
    Column("rearm_percent", Double(), nullable=False),
    Column("cooldown_s", Double(), nullable=True),
    Column("remind_every_s", Double(), nullable=True),
    UniqueConstraint("user_id", "ticker"),
)

alert_states = Table(
    "alert_states",
    metadata,
    Column(
        "subscription_id",
        String(ID_LENGTH),
        ForeignKey("subscriptions.subscription_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("side", String(4), primary_key=True),
    Column("status", String(8), nullable=False),
    Column("episode", Integer(), nullable=False),
    Column("fired_at", Double(), nullable=True),
    Column("reminders", Integer(), nullable=False),
    Column("next_reminder_at", Double(), nullable=True),
)

alert_progress = Table(
    "alert_progress",
    metadata,
    Column("ticker", String(TICKER_LENGTH), primary_key=True),
    # The time of the newest quote the ticker's alert states were evaluated against.
    Column("applied_through", UtcDateTime(), nullable=False),
)

quotes = Table(
    "quotes",
    metadata,
    Column(
        "quote_id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("ticker", String(TICKER_LENGTH), nullable=False),
    Column("price", Double(), nullable=False),
    Column("quoted_at", UtcDateTime(), nullable=False),
    Column("collected_at", UtcDateTime(), nullable=False),
    Column("correlation_id", String(CORRELATION_ID_LENGTH), nullable=True),  # NULL: before 0006
    UniqueConstraint("ticker", "quoted_at"),  # also the (ticker, quoted_at) lookup index
)

notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", String(160), primary_key=True),
    Column("subscription_id", String(ID_LENGTH), nullable=False),
    Column("user_id", String(ID_LENGTH), nullable=False),
    Column("email", String(EMAIL_LENGTH), nullable=False),
    Column("ticker", String(TICKER_LENGTH), nullable=False),
    Column("side", String(4), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("price", Double(), nullable=False),
    Column("threshold", Double(), nullable=False),
    Column("quoted_at", UtcDateTime(), nullable=False),
    Column("episode", Integer(), nullable=False),
    Column("status", String(8), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("last_error", String(1000), nullable=True),
    Column("created_at", UtcDateTime(), nullable=True),
    Column("sent_at", UtcDateTime(), nullable=True),
    Column("next_attempt_at", UtcDateTime(), nullable=True),  # PENDING: when due (NULL: now)
    Column("correlation_id", String(CORRELATION_ID_LENGTH), nullable=True),  # its quote's
    Index(None, "user_id", "quoted_at"),
    Index(None, "status", "next_attempt_at"),
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("throttle_key", String(64), primary_key=True),  # scope and a keyed hash
    Column("failures", Integer(), nullable=False),
    Column("last_failure_at", UtcDateTime(), nullable=False),
    Column("blocked_until", UtcDateTime(), nullable=True),
    Index(None, "last_failure_at"),
)

request_ledger = Table(
    "request_ledger",
    metadata,
    Column("method", String(64), primary_key=True),
    Column("subject", String(EMAIL_LENGTH), primary_key=True),
    Column("request_id", String(128), primary_key=True),
    Column("fingerprint", String(64), nullable=True),  # NULL while the claim is in progress
    Column("code", String(32), nullable=True),
    Column("message", Text(), nullable=True),
    Column("field", String(128), nullable=True),
    Column("result", JSON(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False, index=True),
)

ticker_status = Table(
    "ticker_status",
    metadata,
    Column("ticker", String(TICKER_LENGTH), primary_key=True),
    Column("status", String(8), nullable=False),
    Column("reason", String(200), nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column(
        "outbox_id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("topic", String(249), nullable=False),  # 249: Kafka's longest topic name
    Column("message_key", String(255), nullable=False),
    Column("message_value", Text(), nullable=False),  # the encoded event (UTF-8 JSON)
    Column("created_at", UtcDateTime(), nullable=False),
)

outbox_checkpoints = Table(
    "outbox_checkpoints",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("kafka_partition", Integer(), primary_key=True),
    # The offset after the last message the relay knows it published to this partition.
    Column("next_offset", BigInteger(), nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)

"""Adapters for the process's own resources: the system clock and random ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidIds:
    """Random 128-bit ids (uuid4, hex)."""

    def new_id(self) -> str:
        return uuid.uuid4().hex

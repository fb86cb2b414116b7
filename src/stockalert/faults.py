"""Crash points for fault tests: `STOCKALERT_CRASH_AT=NAME:N` makes the process SIGKILL itself
the Nth time it reaches the point NAME (unset, as in production: nothing happens).

The points sit between the steps whose order the exactly-once promise depends on (ADR 11):

| point | reached when | not yet durable |
|---|---|---|
| `db.commit` | a unit of work is about to commit | its state, ledger rows, outbox rows |
| `consumer.handled` | a Kafka message's handler committed | the message's offset |
| `relay.published` | the brokers acknowledged outbox rows | the rows' removal |
| `smtp.accepted` | the SMTP server answered 250 | the ledger's SENT |

A real SIGKILL, not an exception: no `finally`, no flush, no goodbye to the group.
"""

from __future__ import annotations

import os
import signal
import threading

VARIABLE = "STOCKALERT_CRASH_AT"
_lock = threading.Lock()
_seen: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    raw = os.environ.get(VARIABLE, "")
    name, sep, count = raw.rpartition(":")
    if not sep or not name or not count.isdigit():
        return None
    return name, int(count)


_TARGET = _target()


def crash_point(name: str) -> None:
    """SIGKILL this process if this is the Nth time `name` is reached and it is the target."""
    if _TARGET is None or _TARGET[0] != name:
        return
    with _lock:
        _seen[name] = _seen.get(name, 0) + 1
        if _seen[name] == _TARGET[1]:
            os.kill(os.getpid(), signal.SIGKILL)

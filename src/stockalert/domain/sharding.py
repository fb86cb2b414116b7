"""Shards: how the instances of a role split the keys (tickers, users) between them.

A key belongs to shard `crc32(key) mod count`. That is exactly the Kafka partition a message
with this key lands in (the producer uses librdkafka's `consistent` partitioner, CRC-32 of the
key), so an instance that was assigned partitions P of a topic owns the keys of shards P:
the alert-system the tickers whose quotes it reads, the notifier the users whose e-mails it
sends. `Shards` is what one process owns right now; an embedded run owns everything.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Collection


def shard_of(key: str, count: int) -> int:
    """The shard (Kafka partition) of a key among `count`."""
    return zlib.crc32(key.encode()) % count


class Shards:
    """The shards this process owns: all keys (`Shards.everything()`) or the keys of assigned
    shards, changed as partitions are assigned and revoked. Thread-safe."""

    def __init__(self, *, everything: bool = False) -> None:
        self._everything = everything
        self._owned: set[int] = set()
        self._count = 0
        self._lock = threading.Lock()

    @classmethod
    def everything(cls) -> Shards:
        """Owns every key (the embedded run, a single instance without partitions)."""
        return cls(everything=True)

    @property
    def all_keys(self) -> bool:
        """True when this process owns every key."""
        return self._everything

    @property
    def count(self) -> int:
        """How many shards the keys are split into (0 before the first assignment)."""
        return self._count

    def owns(self, key: str) -> bool:
        """True when the key's shard is this process's."""
        if self._everything:
            return True
        with self._lock:
            return bool(self._owned) and shard_of(key, self._count) in self._owned

    def owned(self) -> frozenset[int]:
        """The shards owned now."""
        with self._lock:
            return frozenset(self._owned)

    def assign(self, shards: Collection[int], count: int) -> frozenset[int]:
        """Own `shards` (of `count`) too; returns those that are new. A different count (the
        topic got more partitions) starts over: only `shards` are owned then."""
        if self._everything:
            return frozenset()
        if count < 1 or any(not 0 <= s < count for s in shards):
            raise ValueError(f"shards {sorted(shards)} are not all within 0..{count - 1}")
        with self._lock:
            if count != self._count:
                self._owned.clear()
                self._count = count
            new = frozenset(shards) - self._owned
            self._owned |= new
            return new

    def revoke(self, shards: Collection[int]) -> frozenset[int]:
        """Stop owning `shards`; returns those that were owned."""
        if self._everything:
            raise ValueError("a process that owns every key cannot give some up")
        with self._lock:
            gone = frozenset(shards) & self._owned
            self._owned -= gone
            return gone

    def select(self, keys: Collection[str], shards: Collection[int]) -> set[str]:
        """The keys among `keys` that fall in `shards`."""
        wanted = set(shards)
        with self._lock:
            count = self._count
        return {k for k in keys if shard_of(k, count) in wanted}

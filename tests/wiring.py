"""The one way tests build a container: the production wiring, in-memory configuration (or
the storage given), deterministic fakes for the clock and ids, a fast hasher, and any other
provider overridden by name.

Real Argon2 runs only in the tests about hashing (`test_adapters_fakes.py`); everywhere else
the hasher is `InsecureFastHasher`, which keeps the unit suite fast.
"""

from __future__ import annotations

from typing import Any

from stockalert.adapters.memory.fakes import (
    InsecureFastHasher,
    ManualClock,
    MemoryMailer,
    SequentialIds,
)
from stockalert.adapters.memory.storage import MemoryStore
from stockalert.containers import Embedded, in_memory_config

_CHECKED: set[Any] = set()  # the container classes whose dependencies were checked


def sql_config(url: str, read_url: str | None = None) -> dict[str, Any]:
    """The in-memory configuration with storage on the database at `url`."""
    return in_memory_config(storage="sql", db_url=url, read_db_url=read_url or url)


def build_container(
    role: Any = Embedded,
    config: dict[str, Any] | None = None,
    *,
    clock: Any = None,
    ids: Any = None,
    **overrides: Any,
) -> Any:
    """A container of `role` (a container class of `stockalert.containers`), configured with
    `config` (default: `in_memory_config()`), its clock a ManualClock (or `clock`), its ids
    sequential (`ids` or "id1", "id2", ...) and, where it has accounts, a fast hasher.

    `overrides` name other providers by their path, dots as double underscores:
    `delivery__mailer=mailer`, `collection__price_source=source`, `core__uow=factory`.
    """
    container = role()
    container.config.from_dict(config or in_memory_config())
    if role not in _CHECKED:  # the same for every instance of a role: checked once
        container.check_dependencies()
        _CHECKED.add(role)
    if hasattr(container, "core"):  # every role but kafka-admin
        container.core.clock.override(clock or ManualClock())
        container.core.ids.override(ids or SequentialIds("id"))
    if hasattr(container, "accounts"):
        container.accounts.hasher.override(InsecureFastHasher())
    for path, value in overrides.items():
        provider = container
        for name in path.split("__"):
            provider = getattr(provider, name)
        provider.override(value)
    return container


class Storage:
    """What outlives a process in unit tests: the store, the clock, the id counter and the
    mail that went out. `process()` starts a new container over it (a restart)."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.store = MemoryStore()
        self.clock = clock or ManualClock()
        self.ids = SequentialIds("id")
        self.mailer = MemoryMailer()

    def process(self, role: Any = Embedded, **overrides: Any) -> Any:
        """A fresh container of `role` on this storage (nothing of an earlier one kept)."""
        overrides.setdefault("delivery__mailer", self.mailer)
        if not hasattr(role, "delivery"):
            overrides.pop("delivery__mailer")
        return build_container(
            role, clock=self.clock, ids=self.ids, core__store=self.store, **overrides
        )

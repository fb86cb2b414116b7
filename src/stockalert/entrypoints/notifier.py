"""`stockalert serve notifier` (or `python -m stockalert.entrypoints.notifier`):
E-mail delivery as its own process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stockalert.containers import Notifier
from stockalert.domain.commands import RetryPendingNotifications
from stockalert.entrypoints import runtime
from stockalert.entrypoints.runtime import Loop, Plan
from stockalert.entrypoints.settings import notifier_config

ROLE = "notifier"
CONTAINER = Notifier
settings = notifier_config  # ConfigError names a missing or bad variable


def loops(config: Mapping[str, Any]) -> list[Loop]:
    """Due PENDING e-mails, every STOCKALERT_DELIVERY_INTERVAL seconds (first at start: what
    a crash left PENDING goes out at once)."""
    return [Loop("notifier", (RetryPendingNotifications(),), float(config["delivery_interval"]))]


def plan(config: Mapping[str, Any], container: Any) -> Plan:
    """The delivery loop alone, on the shared database."""
    return Plan(ROLE, loops=loops(config))


if __name__ == "__main__":
    runtime.main_for(ROLE)

"""`stockalert serve notifier` (or `python -m stockalert.entrypoints.notifier`):
E-mail delivery as its own process. With Kafka it is a member of the notifier group on
to-notifier: it delivers each notification it reads, and its retry loop covers the users of
its partitions only, so two instances never send to the same user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stockalert.containers import Notifier
from stockalert.domain.commands import RetryPendingNotifications
from stockalert.entrypoints import runtime
from stockalert.entrypoints.runtime import Loop, Plan, Worker
from stockalert.entrypoints.settings import notifier_config

ROLE = "notifier"
CONTAINER = Notifier
settings = notifier_config  # ConfigError names a missing or bad variable


def loops(config: Mapping[str, Any]) -> list[Loop]:
    """Due PENDING e-mails, every STOCKALERT_DELIVERY_INTERVAL seconds (first at start: what
    a crash left PENDING goes out at once)."""
    return [Loop("notifier", (RetryPendingNotifications(),), float(config["delivery_interval"]))]


def plan(config: Mapping[str, Any], container: Any) -> Plan:
    """The delivery loop on the shared database; with Kafka, the to-notifier consumer too."""
    workers = []
    if config["transport"] == "kafka":
        workers.append(Worker("notifications", container.notifications().run))
    kafka = config["transport"] == "kafka"
    return Plan(ROLE, loops=loops(config), workers=workers, needs_kafka=kafka)


if __name__ == "__main__":
    runtime.main_for(ROLE)

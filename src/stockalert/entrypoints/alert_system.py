"""`stockalert serve alert-system` (or `python -m stockalert.entrypoints.alert_system`):
threshold crossings as their own process, one member of the alert-system consumer group.

It follows the subscription-changes topic from its end before it joins the group, so that no
change committed after it loads a ticker goes unseen; then partitions of to-alert-system
come and go (LoadAlerts / DropAlerts) and each PriceUpdated runs through the engine. Its
notifications go to to-notifier through the outbox and its relay.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from stockalert.containers import AlertSystem
from stockalert.entrypoints import runtime
from stockalert.entrypoints.runtime import Plan, Worker
from stockalert.entrypoints.settings import alert_system_config

ROLE = "alert-system"
CONTAINER = AlertSystem
settings = alert_system_config  # ConfigError names a missing or bad variable


def consume(container: Any) -> Worker:
    """Subscription changes followed from their end, then the quotes of the group."""
    changes, quotes = container.changes(), container.quotes()

    def run(halt: threading.Event) -> None:
        # Positioned at the end before any ticker is loaded (waiting for kafka-admin to
        # create the topics, if need be).
        if not changes.start_when_ready(halt):
            return
        follower = threading.Thread(
            target=changes.run, args=(halt,), name="subscription-changes", daemon=True
        )
        follower.start()
        try:
            quotes.run(halt)
        finally:
            follower.join(timeout=30)

    return Worker("quotes", run)


def plan(config: Mapping[str, Any], container: Any) -> Plan:
    """The consumers and the outbox relay (notifications to to-notifier)."""
    return Plan(
        ROLE,
        workers=[consume(container), *runtime.outbox_relay_workers(config, container)],
        needs_kafka=True,
    )


if __name__ == "__main__":
    runtime.main_for(ROLE)

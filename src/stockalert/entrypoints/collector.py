"""`stockalert serve collector` (or `python -m stockalert.entrypoints.collector`):
Price collection as its own process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stockalert.containers import Collector
from stockalert.domain.commands import CollectPrices
from stockalert.entrypoints import runtime
from stockalert.entrypoints.runtime import Loop, Plan
from stockalert.entrypoints.settings import collector_config

ROLE = "collector"
CONTAINER = Collector
settings = collector_config  # ConfigError names a missing or bad variable


def loops(config: Mapping[str, Any]) -> list[Loop]:
    """One collection cycle every STOCKALERT_COLLECT_INTERVAL seconds."""
    command = CollectPrices(float(config["stale_after_s"]))
    return [Loop("collector", (command,), float(config["collect_interval"]))]


def plan(config: Mapping[str, Any], container: Any) -> Plan:
    """The collection loop on the shared database; with Kafka, the outbox relay publishes
    each new quote to to-alert-system."""
    return Plan(ROLE, loops=loops(config), workers=runtime.outbox_relay_workers(config, container))


if __name__ == "__main__":
    runtime.main_for(ROLE)

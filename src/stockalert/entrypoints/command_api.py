"""`stockalert serve command-api` (or `python -m stockalert.entrypoints.command_api`):
The command side of CQRS (gRPC CommandService) as its own process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stockalert.containers import CommandApi
from stockalert.entrypoints import runtime
from stockalert.entrypoints.runtime import Plan
from stockalert.entrypoints.settings import command_api_config

ROLE = "command-api"
CONTAINER = CommandApi
settings = command_api_config  # ConfigError names a missing or bad variable


def plan(config: Mapping[str, Any], container: Any) -> Plan:
    """CommandService on STOCKALERT_GRPC_ADDR, on the write database; with Kafka, the outbox
    relay publishes subscription changes."""
    return Plan(ROLE, grpc=True, workers=runtime.outbox_relay_workers(config, container))


if __name__ == "__main__":
    runtime.main_for(ROLE)

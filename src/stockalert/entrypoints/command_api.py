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


def plan(config: Mapping[str, Any]) -> Plan:
    """CommandService on STOCKALERT_GRPC_ADDR, on the write database."""
    return Plan(ROLE, grpc=True)


if __name__ == "__main__":
    runtime.main_for(ROLE)

"""`stockalert serve command-api` (or `python -m stockalert.entrypoints.command_api`):
The command side of CQRS (gRPC CommandService) as its own process.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Any

from stockalert.containers import CommandApi
from stockalert.entrypoints import runtime
from stockalert.entrypoints.runtime import Plan
from stockalert.entrypoints.settings import command_api_config

ROLE = "command-api"


def plan(config: Mapping[str, Any]) -> Plan:
    """CommandService on STOCKALERT_GRPC_ADDR, on the write database."""
    return Plan(ROLE, grpc=True)


def settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The role's configuration; ConfigError names a missing or bad variable."""
    return command_api_config(environ)


def run(config: Mapping[str, Any], stop: threading.Event) -> None:
    """Run the role until `stop` is set."""
    runtime.serve(runtime.assemble(CommandApi, dict(config)), plan(config), stop)


if __name__ == "__main__":
    from stockalert.entrypoints.cli import main

    sys.exit(main(["serve", ROLE, *sys.argv[1:]]))

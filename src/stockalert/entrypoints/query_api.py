"""`stockalert serve query-api` (or `python -m stockalert.entrypoints.query_api`):
The query side of CQRS (gRPC QueryService) as its own process.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Any

from stockalert.containers import QueryApi
from stockalert.entrypoints import runtime
from stockalert.entrypoints.runtime import Plan
from stockalert.entrypoints.settings import query_api_config

ROLE = "query-api"


def plan(config: Mapping[str, Any]) -> Plan:
    """QueryService on STOCKALERT_QUERY_ADDR, reading through STOCKALERT_READ_DB_URL only: no
    write connection is opened, nothing is migrated."""
    return Plan(ROLE, grpc=True, writes=False)


def settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The role's configuration; ConfigError names a missing or bad variable."""
    return query_api_config(environ)


def run(config: Mapping[str, Any], stop: threading.Event) -> None:
    """Run the role until `stop` is set."""
    runtime.serve(runtime.assemble(QueryApi, dict(config)), plan(config), stop)


if __name__ == "__main__":
    from stockalert.entrypoints.cli import main

    sys.exit(main(["serve", ROLE, *sys.argv[1:]]))

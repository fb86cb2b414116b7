"""`stockalert serve query-api` (or `python -m stockalert.entrypoints.query_api`):
The query side of CQRS (gRPC QueryService) as its own process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stockalert.containers import QueryApi
from stockalert.entrypoints import runtime
from stockalert.entrypoints.runtime import Plan
from stockalert.entrypoints.settings import query_api_config

ROLE = "query-api"
CONTAINER = QueryApi
settings = query_api_config  # ConfigError names a missing or bad variable


def plan(config: Mapping[str, Any], container: Any) -> Plan:
    """QueryService on STOCKALERT_QUERY_ADDR, reading through STOCKALERT_READ_DB_URL only: no
    write connection is opened, nothing is migrated."""
    return Plan(ROLE, grpc=True, database="read")


if __name__ == "__main__":
    runtime.main_for(ROLE)

"""`stockalert serve cleaner` (or `python -m stockalert.entrypoints.cleaner`):
Retention as its own process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stockalert.containers import Cleaner
from stockalert.domain.commands import CleanUp
from stockalert.entrypoints import runtime
from stockalert.entrypoints.runtime import Loop, Plan
from stockalert.entrypoints.settings import cleaner_config

ROLE = "cleaner"
CONTAINER = Cleaner
settings = cleaner_config  # ConfigError names a missing or bad variable


def cleanup_command(settings: Mapping[str, Any]) -> CleanUp:
    """The CleanUp command of the retention settings."""
    return CleanUp(
        float(settings["quote_retention_s"]),
        int(settings["keep_quotes"]),
        float(settings["request_ttl_s"]),
    )


def loops(config: Mapping[str, Any]) -> list[Loop]:
    """One clean-up at start, then every STOCKALERT_CLEAN_INTERVAL seconds."""
    retention = config["cleaner"]
    return [Loop("cleaner", (cleanup_command(retention),), float(retention["interval_s"]))]


def plan(config: Mapping[str, Any], container: Any) -> Plan:
    """The retention loop alone, on the shared database."""
    return Plan(ROLE, loops=loops(config))


if __name__ == "__main__":
    runtime.main_for(ROLE)

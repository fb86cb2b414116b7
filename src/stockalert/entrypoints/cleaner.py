"""`stockalert serve cleaner` (or `python -m stockalert.entrypoints.cleaner`):
Retention as its own process.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Any

from stockalert.containers import Cleaner
from stockalert.domain.commands import CleanUp
from stockalert.entrypoints import runtime
from stockalert.entrypoints.runtime import Loop, Plan
from stockalert.entrypoints.settings import cleaner_config

ROLE = "cleaner"


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


def plan(config: Mapping[str, Any]) -> Plan:
    """The retention loop alone, on the shared database."""
    return Plan(ROLE, loops=loops(config))


def settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The role's configuration; ConfigError names a missing or bad variable."""
    return cleaner_config(environ)


def run(config: Mapping[str, Any], stop: threading.Event) -> None:
    """Run the role until `stop` is set."""
    runtime.serve(runtime.assemble(Cleaner, dict(config)), plan(config), stop)


if __name__ == "__main__":
    from stockalert.entrypoints.cli import main

    sys.exit(main(["serve", ROLE, *sys.argv[1:]]))

"""`stockalert serve notifier` (or `python -m stockalert.entrypoints.notifier`):
E-mail delivery as its own process.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Any

from stockalert.containers import Notifier
from stockalert.domain.commands import RetryPendingNotifications
from stockalert.entrypoints import runtime
from stockalert.entrypoints.runtime import Loop, Plan
from stockalert.entrypoints.settings import notifier_config

ROLE = "notifier"


def loops(config: Mapping[str, Any]) -> list[Loop]:
    """Due PENDING e-mails, every STOCKALERT_DELIVERY_INTERVAL seconds (first at start: what
    a crash left PENDING goes out at once)."""
    return [Loop("notifier", (RetryPendingNotifications(),), float(config["delivery_interval"]))]


def plan(config: Mapping[str, Any]) -> Plan:
    """The delivery loop alone, on the shared database."""
    return Plan(ROLE, loops=loops(config))


def settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The role's configuration; ConfigError names a missing or bad variable."""
    return notifier_config(environ)


def run(config: Mapping[str, Any], stop: threading.Event) -> None:
    """Run the role until `stop` is set."""
    runtime.serve(runtime.assemble(Notifier, dict(config)), plan(config), stop)


if __name__ == "__main__":
    from stockalert.entrypoints.cli import main

    sys.exit(main(["serve", ROLE, *sys.argv[1:]]))

"""`stockalert run`: every role in one process (embedded mode), and `stockalert db upgrade`.

The embedded run composes the roles' own loops — collector, notifier, cleaner — over one bus
that also holds the alert engine, and serves CommandService and QueryService together on
STOCKALERT_GRPC_ADDR. At start it loads the alert engine and applies what a crash left
unapplied (stored quotes after each ticker's high-water mark); the notifier loop's first
pass sends what a crash left PENDING. SIGINT / SIGTERM stop it cleanly.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.migrate import current_revision, upgrade
from stockalert.containers import Embedded
from stockalert.domain.commands import LoadAlerts
from stockalert.entrypoints import cleaner, collector, notifier, runtime
from stockalert.entrypoints.runtime import Plan
from stockalert.entrypoints.settings import embedded_config, storage_config


def plan(config: Mapping[str, Any]) -> Plan:
    """The roles' loops in one process, the alert engine loaded first, both APIs served."""
    return Plan(
        "embedded",
        loops=[*collector.loops(config), *notifier.loops(config), *cleaner.loops(config)],
        startup=(LoadAlerts(),),
        grpc=True,
    )


def build(environ: Mapping[str, str]) -> tuple[Any, dict[str, Any]]:
    """The embedded container and its configuration."""
    config = embedded_config(environ)
    return runtime.assemble(Embedded, config), config


def run(environ: Mapping[str, str], stop: threading.Event | None = None) -> None:
    """Run until `stop` is set (by a signal when called from the CLI)."""
    run_with(embedded_config(environ), stop or threading.Event())


def run_with(config: dict[str, Any], stop: threading.Event) -> None:
    """Run the embedded configuration `config` until `stop` is set."""
    container = runtime.assemble(Embedded, config)
    database = "memory" if config["storage"] == "memory" else config["db_url"].split("@")[-1]
    where = (
        f" db={database} prices={config['prices'].get('path') or config['prices']['kind']}"
        f" mail={config['mail'].get('smtp', {}).get('host') or config['mail']['outbox_dir']}"
    )
    runtime.serve(container, plan(config), stop, where)


def upgrade_database(environ: Mapping[str, str]) -> str:
    """`stockalert db upgrade`: migrate STOCKALERT_DB_URL to head; returns the revision."""
    url = storage_config(environ)["db_url"]
    if url == "memory://":
        return "memory (nothing to migrate)"
    engine = make_engine(url)
    try:
        upgrade(engine)
        return str(current_revision(engine))
    finally:
        engine.dispose()

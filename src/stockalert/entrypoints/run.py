"""`stockalert run` (every role in one process) and `stockalert serve cleaner`.

The embedded run serves both gRPC services on STOCKALERT_GRPC_ADDR and runs two loops: the
collector (retry pending e-mails, then collect prices, every STOCKALERT_COLLECT_INTERVAL s)
and the cleaner (every STOCKALERT_CLEAN_INTERVAL s); the alert engine and the notifier run on
the in-process bus. SIGINT / SIGTERM stop it cleanly.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from stockalert.adapters.grpc.server import RunningServer
from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.migrate import current_revision, upgrade
from stockalert.containers import Container, in_memory_config
from stockalert.domain.commands import (
    CleanUp,
    CollectPrices,
    Command,
    LoadAlerts,
    RetryPendingNotifications,
)
from stockalert.entrypoints.settings import (
    cleaner_config,
    collector_config,
    embedded_config,
    storage_config,
)

log = logging.getLogger("stockalert.run")
MAX_BACKOFF_S = 30.0


def configure_logging(level: int = logging.INFO) -> None:
    """One key=value line per event, on stderr."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        force=True,
    )
    # Library warnings (pandas inside yfinance emits many per cycle) become log records at
    # WARNING; the py.warnings logger is raised to ERROR so they do not flood the log.
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)


class Periodic(threading.Thread):
    """Send `commands` to the bus now and then every `interval` seconds until stopped."""

    def __init__(
        self,
        name: str,
        container: Container,
        commands: Sequence[Command],
        interval: float,
        halt: threading.Event,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._bus = container.bus()
        self._commands = commands
        self._interval = interval
        self._halt = halt

    def run(self) -> None:
        while not self._halt.is_set():
            for command in self._commands:
                try:
                    self._bus.handle(command)
                except Exception:
                    # One failed cycle must not end the loop; the next cycle retries.
                    log.exception("event=cycle_failed command=%s", type(command).__name__)
            self._halt.wait(self._interval)


def cleanup_command(settings: Mapping[str, Any]) -> CleanUp:
    """The CleanUp command of the retention settings."""
    return CleanUp(
        float(settings["quote_retention_s"]),
        int(settings["keep_quotes"]),
        float(settings["request_ttl_s"]),
    )


def prepare_database(container: Container, halt: threading.Event) -> bool:
    """Migrate the database to head, retrying with backoff while it is unreachable."""
    if container.config.storage() != "sql":
        return True
    engine = container.db_engine()
    assert isinstance(engine, Engine)
    delay = 1.0
    while not halt.is_set():
        try:
            upgrade(engine)
        except DBAPIError as err:
            log.warning(
                "event=database_unavailable retry_in_s=%g error=%r", delay, str(err.orig)[:200]
            )
            halt.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
            continue
        log.info("event=database_ready url=%s", engine.url.render_as_string(hide_password=True))
        return True
    return False


def build(environ: Mapping[str, str]) -> tuple[Container, dict[str, Any]]:
    """The container configured for the embedded run."""
    config = embedded_config(environ)
    container = Container()
    container.config.from_dict(config)
    container.check_dependencies()
    return container, config


def run(environ: Mapping[str, str], stop: threading.Event | None = None) -> None:
    """Run until `stop` is set (by a signal when called from the CLI)."""
    halt = stop or threading.Event()
    container, config = build(environ)
    try:
        if not prepare_database(container, halt):
            return
        container.bus().handle(LoadAlerts())
        server = container.grpc_server()
        assert isinstance(server, RunningServer)
        cleaner = config["cleaner"]
        loops = [
            Periodic(
                "collector",
                container,
                [RetryPendingNotifications(), CollectPrices(float(config["stale_after_s"]))],
                float(config["collect_interval"]),
                halt,
            ),
            Periodic(
                "cleaner",
                container,
                [cleanup_command(cleaner)],
                float(cleaner["interval_s"]),
                halt,
            ),
        ]
        log.info(
            "event=started mode=embedded grpc_port=%d db=%s prices=%s outbox=%s interval_s=%g",
            server.port,
            config["storage"] if config["storage"] == "memory" else config["db_url"].split("@")[-1],
            config["prices"].get("path") or config["prices"]["kind"],
            config["mail"]["outbox_dir"],
            config["collect_interval"],
        )
        for loop in loops:
            loop.start()
        halt.wait()
        log.info("event=stopping")
        for loop in loops:
            loop.join(timeout=30)
    finally:
        container.shutdown_resources()
        log.info("event=stopped")


def role_container(environ: Mapping[str, str], **settings: Any) -> Container:
    """A container for one role over the shared database; it signs no token and sends no mail
    (throwaway values keep the shared wiring complete)."""
    container = Container()
    container.config.from_dict(
        in_memory_config(
            **storage_config(environ),
            state_dir=environ.get("STOCKALERT_STATE_DIR", "").strip() or ".stockalert",
            auth_secret=secrets.token_urlsafe(48),
            **settings,
        )
    )
    container.check_dependencies()
    return container


def serve_role(role: str, environ: Mapping[str, str], stop: threading.Event | None = None) -> None:
    """`stockalert serve cleaner|collector`: one role's loop on the shared database."""
    halt = stop or threading.Event()
    if role == "cleaner":
        settings = cleaner_config(environ)
        container = role_container(environ, cleaner=settings)
        commands: list[Command] = [cleanup_command(settings)]
        interval = float(settings["interval_s"])
    elif role == "collector":
        collector = collector_config(environ)
        # Until Kafka carries PriceUpdated to the alert system, the collector stores quotes
        # and ticker statuses; alerts are evaluated where the alert engine runs.
        container = role_container(environ, alerting=False, **collector)
        commands = [CollectPrices(float(collector["stale_after_s"]))]
        interval = float(collector["collect_interval"])
    else:
        raise ValueError(f"unknown role {role!r}")
    try:
        if not prepare_database(container, halt):
            return
        loop = Periodic(role, container, commands, interval, halt)
        log.info("event=started role=%s interval_s=%g", role, interval)
        loop.start()
        halt.wait()
        loop.join(timeout=30)
    finally:
        container.shutdown_resources()
        log.info("event=stopped role=%s", role)


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


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGINT and SIGTERM set `stop` (a second one is still honoured the same way)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("event=signal signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)

"""What every long-running process shares: logging, signals, periodic loops, the database at
start, and the run of a role container until SIGINT / SIGTERM.

A role is a container (`containers.py`) plus what it runs: loops (commands sent every so
often), commands sent once at start, and optionally a gRPC server. `serve` runs any such
combination; the embedded run is one combination of the same loops and commands.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType, ModuleType
from typing import Any, Literal

import attrs
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from stockalert.adapters.grpc.server import RunningServer
from stockalert.adapters.logs import JsonFormatter
from stockalert.adapters.sql.migrate import upgrade
from stockalert.adapters.telemetry import (
    ReadinessCheck,
    ReadinessWatch,
    RunningEndpoints,
    start_endpoints,
    stop_endpoints,
)
from stockalert.domain.commands import Command
from stockalert.domain.messagebus import HandlerFailed, MessageBus
from stockalert.entrypoints import cli

log = logging.getLogger("stockalert.run")
MAX_BACKOFF_S = 30.0


def configure_logging(level: int = logging.INFO, log_format: str = "text") -> None:
    """One line per event on stderr: key=value text, or a JSON object (`log_format="json"`,
    STOCKALERT_LOG_FORMAT)."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        force=True,
    )
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    # Library warnings (pandas inside yfinance emits many per cycle) become log records at
    # WARNING; the py.warnings logger is raised to ERROR so they do not flood the log.
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGINT and SIGTERM set `stop` (a second one is still honoured the same way)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("event=signal signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@attrs.frozen
class Loop:
    """Commands sent to the bus now and then every `interval_s` seconds."""

    name: str
    commands: tuple[Command, ...]
    interval_s: float


class Periodic(threading.Thread):
    """Runs one Loop until `halt` is set; a failed cycle is logged and the next one retries."""

    def __init__(self, loop: Loop, bus: MessageBus, halt: threading.Event) -> None:
        super().__init__(name=loop.name, daemon=True)
        self._loop = loop
        self._bus = bus
        self._halt = halt

    def run(self) -> None:
        while not self._halt.is_set():
            for command in self._loop.commands:
                try:
                    self._bus.handle(command)
                except HandlerFailed:
                    pass  # each failed handler was logged with its traceback already
                except Exception:
                    # One failed cycle must not end the loop; the next cycle retries.
                    log.exception("event=cycle_failed command=%s", type(command).__name__)
            self._halt.wait(self._loop.interval_s)


def wait_for_database(engine: Engine, halt: threading.Event, *, migrate: bool) -> bool:
    """Migrate the database to head (or, `migrate` off, just reach it), retrying with
    backoff while it is unreachable; False when halted first."""
    delay = 1.0
    while not halt.is_set():
        try:
            if migrate:
                upgrade(engine)
            else:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
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


@attrs.frozen
class Worker:
    """A long-running task of a process (an outbox relay, a Kafka consumer): runs until the
    event it is given is set."""

    name: str
    target: Callable[[threading.Event], None]


@attrs.frozen
class Plan:
    """What a process runs: its loops and workers, the commands sent once at start (retried
    until they succeed), a gRPC server."""

    name: str
    loops: Sequence[Loop] = ()
    startup: Sequence[Command] = ()
    grpc: bool = False
    workers: Sequence[Worker] = ()
    # The database this process needs: the write one (migrated at start), the read one, or
    # none at all (kafka-admin).
    database: Literal["write", "read"] | None = "write"
    # Kafka is needed to work, not only to publish later (the outbox waits): readiness
    # includes it (the consumers: alert-system, notifier; kafka-admin).
    needs_kafka: bool = False


def _start_up(bus: MessageBus, commands: Sequence[Command], halt: threading.Event) -> bool:
    """Each command once, retried with backoff while it raises (Kafka or the database not
    reachable yet); False when halted first."""
    for command in commands:
        delay = 1.0
        while not halt.is_set():
            try:
                bus.handle(command)
            except HandlerFailed:
                # Logged with their tracebacks; what they left undone (an alert not yet
                # e-mailed) is PENDING in the database, and the loops pick it up.
                log.warning("event=startup_incomplete command=%s", type(command).__name__)
            except Exception as err:  # noqa: BLE001 - any failure at start is retried
                log.warning(
                    "event=startup_retry command=%s retry_in_s=%g error=%r",
                    type(command).__name__,
                    delay,
                    str(err)[:200],
                )
                halt.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            break
    return not halt.is_set()


def serve(container: Any, plan: Plan, halt: threading.Event, describe: str = "") -> None:
    """Run `plan` over `container` until `halt` is set; resources are shut down on the way out
    (producers flushed, connections closed, the gRPC server stopped with a grace period)."""
    checks = readiness_checks(container, plan)
    endpoints = _start_endpoints(container, checks)
    try:
        if plan.database is not None and container.core.config.storage() == "sql":
            write = plan.database == "write"
            core = container.core
            engine = core.db_engine() if write else core.read_db_engine()
            if not wait_for_database(engine, halt, migrate=write):
                return
        bus: MessageBus = container.bus()
        if hasattr(container, "delivery"):  # the roles that e-mail: what is left to send
            container.core.metrics().watch_pending(
                container.core.read_model().pending_notifications
            )
        if not _start_up(bus, plan.startup, halt):
            return
        port = ""
        threads: list[threading.Thread] = []
        if plan.grpc:
            server = container.grpc_server()
            assert isinstance(server, RunningServer)
            port = f" grpc_port={server.port}"
            if checks:  # health follows the dependencies: NOT_SERVING while one is down
                threads.append(
                    ReadinessWatch(checks, lambda ready, _: server.set_serving(ready), halt)
                )
        threads += [Periodic(loop, bus, halt) for loop in plan.loops]
        threads += [
            threading.Thread(target=w.target, args=(halt,), name=w.name, daemon=True)
            for w in plan.workers
        ]
        loops = ",".join(f"{loop.name}:{loop.interval_s:g}s" for loop in plan.loops) or "-"
        workers = ",".join(w.name for w in plan.workers) or "-"
        log.info(
            "event=started role=%s%s loops=%s workers=%s%s",
            plan.name,
            port,
            loops,
            workers,
            describe,
        )
        for thread in threads:
            thread.start()
        halt.wait()
        log.info("event=stopping role=%s", plan.name)
        for thread in threads:
            thread.join(timeout=30)
    finally:
        container.shutdown_resources()
        if endpoints is not None:
            stop_endpoints(endpoints)
        log.info("event=stopped role=%s", plan.name)


def readiness_checks(container: Any, plan: Plan) -> dict[str, ReadinessCheck]:
    """What the process needs reachable to do its work: its database (when it has one),
    Kafka (when it consumes)."""
    checks: dict[str, ReadinessCheck] = {}
    if plan.database is not None and container.core.config.storage() == "sql":
        core = container.core
        engine = core.db_engine if plan.database == "write" else core.read_db_engine
        checks["database"] = lambda: _ping(engine())
    if plan.needs_kafka:
        from stockalert.adapters.kafka.admin import KafkaProbe  # noqa: PLC0415 - only with Kafka

        checks["kafka"] = KafkaProbe(container.config.kafka.bootstrap()).check
    return checks


def _start_endpoints(
    container: Any, checks: Mapping[str, ReadinessCheck]
) -> RunningEndpoints | None:
    """/metrics, /healthz and /readyz on STOCKALERT_METRICS_PORT (when set): up before the
    database is, so that a role waiting for it is seen alive but not ready."""
    address = container.config.metrics_addr()
    if address is None:
        return None
    metrics = container.core.metrics() if hasattr(container, "core") else container.metrics()
    return start_endpoints(metrics, address, checks)


def _ping(engine: Engine) -> None:
    """SELECT 1 on a pooled DBAPI connection: no SQLAlchemy transaction, so the SQLite write
    engine's BEGIN IMMEDIATE (the write lock) is not taken once a second for a check."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT 1")
        cursor.fetchall()
        cursor.close()
        connection.rollback()  # ends MySQL's implicit transaction; nothing to undo
    except Exception:
        connection.invalidate()  # a dead connection must not go back to the pool
        raise
    finally:
        connection.close()


def outbox_relay_workers(config: Mapping[str, Any], container: Any) -> list[Worker]:
    """With Kafka, a role that writes the outbox also runs a relay (one of them holds the
    lease and publishes at a time); without, nothing."""
    if config["transport"] != "kafka":
        return []
    return [Worker("outbox-relay", container.messaging.relay().run)]


def assemble(container_type: Callable[[], Any], config: dict[str, Any]) -> Any:
    """A role's container filled with its configuration, its wiring checked."""
    container = container_type()
    container.config.from_dict(config)
    container.check_dependencies()
    return container


def run_role(role: ModuleType, config: Mapping[str, Any], stop: threading.Event) -> None:
    """Run a role module (`entrypoints/<role>.py`: CONTAINER, plan) until `stop` is set."""
    container = assemble(role.CONTAINER, dict(config))
    serve(container, role.plan(config, container), stop)


def main_for(role: str) -> None:
    """`python -m stockalert.entrypoints.<role>`: the same as `stockalert serve <role>`."""
    sys.exit(cli.main(["serve", role, *sys.argv[1:]]))


def run_until_signalled(
    body: Callable[[threading.Event], None], level: int, log_format: str = "text"
) -> None:
    """Logging, signal handlers, then `body(stop)`."""
    configure_logging(level, log_format)
    stop = threading.Event()
    install_signal_handlers(stop)
    body(stop)

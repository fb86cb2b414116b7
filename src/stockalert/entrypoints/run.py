"""`stockalert run`: every role in one process (the embedded mode).

Both gRPC services on STOCKALERT_GRPC_ADDR, and one loop that every
STOCKALERT_COLLECT_INTERVAL seconds retries pending e-mails and runs a collection cycle; the
alert engine and the notifier run on the in-process bus. SIGINT / SIGTERM stop it cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Mapping
from types import FrameType

from stockalert.adapters.grpc.server import RunningServer
from stockalert.containers import Container
from stockalert.domain.commands import CollectPrices, RetryPendingNotifications
from stockalert.entrypoints.settings import embedded_config

log = logging.getLogger("stockalert.run")


def configure_logging(level: int = logging.INFO) -> None:
    """One key=value line per event, on stderr."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        force=True,
    )


class CollectorLoop(threading.Thread):
    """Retry pending e-mails, then collect prices; again every `interval` seconds."""

    def __init__(self, container: Container, interval: float, stop: threading.Event) -> None:
        super().__init__(name="collector", daemon=True)
        self._bus = container.bus()
        self._interval = interval
        self._halt = stop

    def run(self) -> None:
        while not self._halt.is_set():
            for command in (RetryPendingNotifications(), CollectPrices()):
                try:
                    self._bus.handle(command)
                except Exception:
                    # One failed cycle must not end the loop; the next cycle retries.
                    log.exception("event=cycle_failed command=%s", type(command).__name__)
            self._halt.wait(self._interval)


def run(environ: Mapping[str, str], stop: threading.Event | None = None) -> None:
    """Run until `stop` is set (by a signal when called from the CLI)."""
    stop = stop or threading.Event()
    config = embedded_config(environ)
    container = Container()
    container.config.from_dict(config)
    container.check_dependencies()
    container.init_resources()
    try:
        server = container.grpc_server()
        assert isinstance(server, RunningServer)
        log.info(
            "event=started mode=embedded grpc_port=%d prices=%s outbox=%s interval_s=%g",
            server.port,
            config["prices"].get("path") or config["prices"]["kind"],
            config["mail"]["outbox_dir"],
            config["collect_interval"],
        )
        loop = CollectorLoop(container, float(config["collect_interval"]), stop)
        loop.start()
        stop.wait()
        log.info("event=stopping")
        loop.join(timeout=30)
    finally:
        container.shutdown_resources()
    log.info("event=stopped")


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGINT and SIGTERM set `stop` (a second one is still honoured the same way)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("event=signal signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)

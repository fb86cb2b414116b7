"""Prometheus metrics (prometheus-client) and the process's HTTP endpoints for operators.

Every process has one `Metrics` (its own registry, every series labelled by its role), and,
with STOCKALERT_METRICS_PORT, a small HTTP server:

- `/metrics`: the Prometheus text format;
- `/healthz`: 200 while the process runs (liveness);
- `/readyz`: 200 when every readiness check passes (its dependencies are reachable), else
  503 naming the failing ones.

Label values are bounded: roles, gRPC method names and status codes, never user data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import grpc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from stockalert.adapters.binding import BindError
from stockalert.domain.model import Notification, NotificationRecord
from stockalert.domain.views import CollectionReport

log = logging.getLogger(__name__)

# Seconds: from a cached read (~1 ms) to a command waiting on a busy database.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds from the quote's time to the SMTP server's acceptance: the pipeline's latency
# (sub-second when it flows) up to the retries of an SMTP outage.
DELIVERY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OUTCOMES = {"SENT": "sent", "PENDING": "retried", "FAILED": "failed"}

ReadinessCheck = Callable[[], None]  # raises when the dependency is not reachable


class Metrics:
    """The metrics of one process; `role` labels every series."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.registry = CollectorRegistry(auto_describe=True)
        self.grpc_requests = self._counter(
            "stockalert_grpc_requests_total",
            "gRPC calls handled, by method and status code.",
            ("method", "code"),
        )
        self.grpc_duration = self._histogram(
            "stockalert_grpc_request_duration_seconds",
            "Time to handle a gRPC call, by method.",
            ("method",),
            LATENCY_BUCKETS,
        )
        self.request_replays = self._counter(
            "stockalert_request_replays_total",
            "Commands whose request id was seen before (their stored reply was returned).",
            ("method",),
        )
        self.collection_cycle = self._histogram(
            "stockalert_collection_cycle_seconds",
            "Duration of a collection cycle (fetch, store, mark).",
            (),
            CYCLE_BUCKETS,
        )
        self.tickers_monitored = self._gauge(
            "stockalert_tickers_monitored",
            "Tickers in use at the last collection cycle.",
            (),
        )
        self.quotes_stored = self._counter(
            "stockalert_quotes_stored_total",
            "New quotes stored by the collector.",
            (),
        )
        self.fetch_errors = self._counter(
            "stockalert_fetch_errors_total",
            "Tickers the price source did not price, by kind (unknown ticker, failed fetch).",
            ("kind",),
        )
        self.quotes_applied = self._counter(
            "stockalert_quotes_applied_total",
            "Quotes evaluated by the alert engine.",
            (),
        )
        self.alerts = self._counter(
            "stockalert_alerts_total",
            "Notifications raised (committed PENDING), by side and kind (crossing, reminder).",
            ("side", "kind"),
        )
        self.notifications = self._counter(
            "stockalert_notifications_total",
            "Delivery attempts by outcome: sent, retried (still pending), failed (permanent).",
            ("outcome",),
        )
        self.delivery_latency = self._histogram(
            "stockalert_notification_delivery_seconds",
            "From the quote's time to the SMTP server's acceptance of its e-mail.",
            (),
            DELIVERY_BUCKETS,
        )
        self.dead_letters = self._counter(
            "stockalert_dead_letters_total",
            "Messages sent to the dead-letter topic, by the topic they came from and why.",
            ("topic", "reason"),
        )
        self.breaker_state = self._gauge(
            "stockalert_circuit_breaker_state",
            "1 for the breaker's current state (closed, half_open, open), 0 for the others.",
            ("breaker", "state"),
        )
        self.consumer_lag = self._gauge(
            "stockalert_consumer_lag_messages",
            "Messages of a partition this consumer has not read yet (high watermark - position).",
            ("topic", "partition"),
        )
        self.kafka_brokers = self._gauge(
            "stockalert_kafka_brokers_online",
            "Brokers in the cluster's metadata at the last check (kafka-admin).",
            (),
        )
        self.kafka_under_replicated = self._gauge(
            "stockalert_kafka_under_replicated_partitions",
            "Partitions with fewer in-sync replicas than replicas, by topic (kafka-admin).",
            ("topic",),
        )
        self.kafka_offline = self._gauge(
            "stockalert_kafka_offline_partitions",
            "Partitions without a leader, by topic (kafka-admin).",
            ("topic",),
        )

        self.pending = self._gauge(
            "stockalert_notifications_pending",
            "E-mails still to send (PENDING in the notification ledger), read at each scrape.",
            (),
        )

    # Every series has the role label first; the others are the metric's own.
    def _counter(self, name: str, doc: str, labels: tuple[str, ...]) -> Counter:
        return Counter(name, doc, ["role", *labels], registry=self.registry)

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
        return Gauge(name, doc, ["role", *labels], registry=self.registry)

    def _histogram(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> Histogram:
        return Histogram(name, doc, ["role", *labels], buckets=buckets, registry=self.registry)

    def watch_pending(self, count: Callable[[], int]) -> None:
        """The ledger's PENDING count, read at each scrape (NaN while it cannot be read)."""

        def read() -> float:
            try:
                return float(count())
            except Exception:  # noqa: BLE001 - the database down must not break /metrics
                return float("nan")

        self.pending.labels(self.role).set_function(read)

    def watch_breaker(self, name: str, state: Callable[[], str]) -> None:
        """The breaker's state, read at each scrape (`state()`: its current state's name)."""

        def is_in(each: str) -> Callable[[], float]:
            return lambda: 1.0 if state().lower() == each else 0.0

        for each in ("closed", "half_open", "open"):
            self.breaker_state.labels(self.role, name, each).set_function(is_in(each))

    def grpc_interceptor(self) -> grpc.ServerInterceptor:
        """Counts and times every unary call the server handles."""
        return _MetricsInterceptor(self)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class _MetricsInterceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # unknown methods (gRPC answers UNIMPLEMENTED) and streams
        method = handler_call_details.method.rsplit("/", 1)[-1]
        behavior = handler.unary_unary
        requests, duration = self._metrics.grpc_requests, self._metrics.grpc_duration
        role = self._metrics.role

        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                return behavior(request, context)
            except BaseException:
                status = context.code()  # type: ignore[attr-defined]  # grpc >= 1.38
                code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                duration.labels(role, method).observe(time.perf_counter() - started)
                requests.labels(role, method, code).inc()

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class PrometheusTelemetry:
    """The domain's Telemetry port, as this process's metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics
        self._role = metrics.role

    def collected(self, report: CollectionReport, seconds: float) -> None:
        m, role = self._m, self._role
        m.collection_cycle.labels(role).observe(seconds)
        m.tickers_monitored.labels(role).set(report.tickers)
        m.quotes_stored.labels(role).inc(report.stored)
        m.fetch_errors.labels(role, "unknown").inc(len(report.unknown))
        m.fetch_errors.labels(role, "failed").inc(len(report.failed))

    def quotes_applied(self, count: int) -> None:
        self._m.quotes_applied.labels(self._role).inc(count)

    def alert_raised(self, notification: Notification) -> None:
        side, kind = notification.side.value, notification.kind.value
        self._m.alerts.labels(self._role, side, kind).inc()

    def delivery_attempted(self, record: NotificationRecord, at: datetime) -> None:
        outcome = OUTCOMES.get(record.status.value)
        if outcome is None:
            return
        self._m.notifications.labels(self._role, outcome).inc()
        if outcome == "sent":
            latency = (at - record.notification.quoted_at).total_seconds()
            self._m.delivery_latency.labels(self._role).observe(max(latency, 0.0))

    def request_replayed(self, method: str) -> None:
        self._m.request_replays.labels(self._role, method).inc()


@attrs.frozen
class RunningEndpoints:
    """The started HTTP server and the port it listens on (useful with port 0)."""

    server: ThreadingHTTPServer
    port: int


def start_endpoints(
    metrics: Metrics, address: str, checks: Mapping[str, ReadinessCheck] | None = None
) -> RunningEndpoints:
    """Serve /metrics, /healthz and /readyz on `address` (HOST:PORT) from a daemon thread."""
    readiness = dict(checks or {})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._answer(200, b"ok\n")
            elif path == "/readyz":
                failing = _failing(readiness)
                if failing:
                    self._answer(503, f"not ready: {', '.join(failing)}\n".encode())
                else:
                    self._answer(200, b"ready\n")
            else:
                self._answer(404, b"not found: /metrics, /healthz, /readyz\n")

        def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # scrapes every few seconds would flood the log

    host, _, port = address.rpartition(":")
    try:
        server = ThreadingHTTPServer((host, int(port)), Handler)
    except OSError as err:
        raise BindError(f"STOCKALERT_METRICS_PORT: cannot listen on {address}: {err}") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="endpoints", daemon=True).start()
    bound = int(server.server_address[1])
    log.info("event=endpoints_listening address=%s port=%d", host, bound)
    return RunningEndpoints(server, bound)


def _failing(checks: Mapping[str, ReadinessCheck]) -> list[str]:
    failing = []
    for name, check in checks.items():
        try:
            check()
        except Exception as err:  # noqa: BLE001 - any failure means not ready
            # DEBUG: polled every second during an outage; the change itself is logged once.
            log.debug("event=not_ready dependency=%s error=%r", name, str(err)[:200])
            failing.append(name)
    return failing


class ReadinessWatch(threading.Thread):
    """Runs the readiness checks every `interval_s` and calls `changed(ready, failing)` when
    the answer changes (first call: the first answer), until `halt` is set."""

    def __init__(
        self,
        checks: Mapping[str, ReadinessCheck],
        changed: Callable[[bool, list[str]], None],
        halt: threading.Event,
        interval_s: float = 1.0,
    ) -> None:
        super().__init__(name="readiness", daemon=True)
        self._checks = dict(checks)
        self._changed = changed
        self._halt = halt
        self._interval_s = interval_s

    def run(self) -> None:
        ready: bool | None = None
        while not self._halt.is_set():
            failing = _failing(self._checks)
            if (not failing) != ready:
                ready = not failing
                log.log(
                    logging.INFO if ready else logging.WARNING,
                    "event=readiness_changed ready=%s failing=%s",
                    str(ready).lower(),
                    ",".join(failing) or "-",
                )
                self._changed(ready, failing)
            self._halt.wait(self._interval_s)


def stop_endpoints(running: RunningEndpoints) -> None:
    running.server.shutdown()
    running.server.server_close()


@contextmanager
def endpoints(
    metrics: Metrics, address: str, checks: Mapping[str, ReadinessCheck] | None = None
) -> Iterator[RunningEndpoints]:
    """The endpoints for the duration of a block."""
    running = start_endpoints(metrics, address, checks)
    try:
        yield running
    finally:
        stop_endpoints(running)

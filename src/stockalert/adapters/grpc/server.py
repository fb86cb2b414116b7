"""The gRPC server: CommandService and/or QueryService, health and reflection."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from stockalert.adapters.binding import BindError
from stockalert.adapters.grpc.servicers import CommandServicer, QueryServicer
from stockalert.adapters.telemetry import Metrics
from stockalert.api.v1 import stockalert_pb2 as pb
from stockalert.api.v1 import stockalert_pb2_grpc as pb_grpc
from stockalert.domain.messagebus import MessageBus

log = logging.getLogger(__name__)

COMMAND_SERVICE = pb.DESCRIPTOR.services_by_name["CommandService"].full_name
QUERY_SERVICE = pb.DESCRIPTOR.services_by_name["QueryService"].full_name
SHUTDOWN_GRACE_S = 5.0


@attrs.frozen
class RunningServer:
    """A started server and the port it listens on (useful with port 0)."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    services: tuple[str, ...] = ()  # the full names served, for their health status

    def set_serving(self, serving: bool) -> None:
        """Health of the server and each service: SERVING, or NOT_SERVING (a dependency such
        as the database is unreachable; load balancers and probes route around it)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.services):
            self.health.set(name, status)


def start(
    bus: MessageBus,
    address: str,
    services: Sequence[str] = ("command", "query"),
    max_workers: int = 16,
    metrics: Metrics | None = None,
) -> RunningServer:
    """Start serving; `services` picks CommandService, QueryService or both; with `metrics`,
    every call is counted and timed."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[] if metrics is None else [metrics.grpc_interceptor()],
        # Without this a second server on the same port would start and share the traffic.
        options=[("grpc.so_reuseport", 0)],
    )
    names = []
    if "command" in services:
        pb_grpc.add_CommandServiceServicer_to_server(CommandServicer(bus), server)
        names.append(COMMAND_SERVICE)
    if "query" in services:
        pb_grpc.add_QueryServiceServicer_to_server(QueryServicer(bus), server)
        names.append(QUERY_SERVICE)
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as err:
        raise BindError(f"cannot listen on {address}: {err}") from None
    if port == 0:
        raise BindError(f"cannot listen on {address}")
    server.start()
    running = RunningServer(server, port, checker, tuple(names))
    running.set_serving(True)
    log.info("event=grpc_listening address=%s port=%d services=%s", address, port, ",".join(names))
    return running


def stop(running: RunningServer, grace: float = SHUTDOWN_GRACE_S) -> None:
    """Report NOT_SERVING, finish in-flight calls (up to `grace` s), then stop."""
    running.health.enter_graceful_shutdown()
    running.server.stop(grace).wait()
    log.info("event=grpc_stopped port=%d", running.port)


def serve(
    bus: MessageBus,
    address: str,
    services: Sequence[str] = ("command", "query"),
    max_workers: int = 16,
    metrics: Metrics | None = None,
) -> Iterator[RunningServer]:
    """dependency-injector Resource: the services on one address, stopped on shutdown."""
    running = start(bus, address, services, max_workers, metrics)
    try:
        yield running
    finally:
        stop(running)

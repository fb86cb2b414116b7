"""The gRPC server: CommandService and/or QueryService, health and reflection."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs
import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from stockalert.adapters.binding import BindError
from stockalert.adapters.grpc.servicers import CommandServicer, QueryServicer, Undecodable
from stockalert.adapters.telemetry import Metrics
from stockalert.api.v1 import stockalert_pb2 as pb
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


def _tolerant(message: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    """The request deserializer: a frame that does not parse becomes `Undecodable`, which the
    servicer answers INVALID_ARGUMENT (grpcio would log a traceback and answer INTERNAL)."""

    def parse(frame: bytes) -> Message | Undecodable:
        try:
            return message.FromString(frame)
        except DecodeError as err:  # bad wire format, invalid UTF-8 in a string field, ...
            return Undecodable(message.DESCRIPTOR.name, len(frame), type(err).__name__)

    return parse


def _add_service(server: grpc.Server, servicer: object, name: str) -> None:
    """What the generated add_*Servicer_to_server does, with tolerant deserializers."""
    service = pb.DESCRIPTOR.services_by_name[name.rpartition(".")[2]]
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_tolerant(getattr(pb, method.input_type.name)),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


def start(
    bus: MessageBus,
    address: str,
    services: Sequence[str] = ("command", "query"),
    max_workers: int = 16,
    metrics: Metrics | None = None,
    max_request_bytes: int = 64 * 1024,
) -> RunningServer:
    """Start serving; `services` picks CommandService, QueryService or both; with `metrics`,
    every call is counted and timed; a request over `max_request_bytes` is refused."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[] if metrics is None else [metrics.grpc_interceptor()],
        options=[
            # Without this a second server on the same port would start and share the traffic.
            ("grpc.so_reuseport", 0),
            # A larger request is RESOURCE_EXHAUSTED before it is read whole or parsed.
            ("grpc.max_receive_message_length", max_request_bytes),
        ],
    )
    names = []
    if "command" in services:
        _add_service(server, CommandServicer(bus), COMMAND_SERVICE)
        names.append(COMMAND_SERVICE)
    if "query" in services:
        _add_service(server, QueryServicer(bus), QUERY_SERVICE)
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
    max_request_bytes: int = 64 * 1024,
) -> Iterator[RunningServer]:
    """dependency-injector Resource: the services on one address, stopped on shutdown."""
    running = start(bus, address, services, max_workers, metrics, max_request_bytes)
    try:
        yield running
    finally:
        stop(running)

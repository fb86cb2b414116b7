#!/usr/bin/env python3
"""grpc-health HOST:PORT: exit 0 when the gRPC server there reports SERVING through the
standard health service (grpc.health.v1, the server's overall status), 1 when it does not or
cannot be reached, 2 on bad usage. The compose healthcheck of command-api and query-api;
compose/build-venv.sh installs it into the venv's bin/ as `grpc-health`."""

from __future__ import annotations

import sys
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_S = 3.0


def main(argv: list[str]) -> int:
    """Ask once; print the status on one line."""
    if len(argv) != 2 or argv[1].startswith("-"):
        print("usage: grpc-health HOST:PORT", file=sys.stderr)
        return 2
    address = argv[1]
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # its stub file declares no RPCs
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S)
        except grpc.RpcError as err:
            print(f"grpc-health: {address}: {err.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"grpc-health: {address}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

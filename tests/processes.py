"""Helpers for tests that start stockalert processes on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environ() -> dict[str, str]:
    """This process's environment without any STOCKALERT_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STOCKALERT_")}


def wait_until_serving(address: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll the gRPC health service until it reports SERVING (or the process dies)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert server.poll() is None, f"the server process exited early ({server.args})"
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                time.sleep(0.1)
                continue
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
    pytest.fail(f"stockalert run did not serve on {address} within {timeout} s")


def run_cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`stockalert ARGS` as a subprocess with `env` (30 s at most)."""
    return subprocess.run(
        [sys.executable, "-m", "stockalert.entrypoints.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must have succeeded."""
    assert result.returncode == 0, result.stderr
    return result.stdout


def spawn(
    env: dict[str, str],
    cwd: Path,
    log: Path,
    *args: str,
    module: str = "stockalert.entrypoints.cli",
) -> subprocess.Popen[bytes]:
    """`python -m MODULE ARGS` (by default `stockalert ARGS`) as a child process in `cwd`, its
    log (stderr) written to `log`."""
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def spawn_run(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """`stockalert run` as a child process in `cwd`, its log (stderr) written to `log`."""
    return spawn(env, cwd, log, "run")

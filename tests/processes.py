"""Helpers for tests that start stockalert processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

T = TypeVar("T")


_GIVEN: set[int] = set()  # the ports free_port handed out in this process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that this process was
    not given before: the kernel often offers again the port it just took back, and two
    servers of one test got the same one (CI: "Address already in use", exit 78)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def listening_address(log: Path, server: subprocess.Popen[bytes], timeout: float) -> str:
    """The address a server started on port 0 listens on, from its `event=grpc_listening`
    line (no race with another process for a port chosen in advance)."""
    pattern = re.compile(r"event=grpc_listening address=(\S+?):\d+ port=(\d+)")

    def found() -> str | None:
        assert server.poll() is None, f"the server exited {server.returncode}: {log.read_text()}"
        match = pattern.search(log.read_text(errors="replace")) if log.is_file() else None
        return None if match is None else f"{match.group(1)}:{match.group(2)}"

    address = wait_for(found, timeout, f"the listening line in {log.name}", logs=[log])
    assert address is not None
    return address


def clean_environ() -> dict[str, str]:
    """This process's environment without any STOCKALERT_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STOCKALERT_")}


def wait_until_serving(address: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll the gRPC health service until it reports SERVING (or the process dies)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        # Any: the stubs package declares no RPC methods on HealthStub
        stub: Any = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert server.poll() is None, f"the server process exited early ({server.args!r})"
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
            umask=0o022,  # the usual one: what the server creates must be private anyway
        )


def spawn_run(env: dict[str, str], cwd: Path, log: Path, *options: str) -> subprocess.Popen[bytes]:
    """`stockalert run [OPTIONS]` as a child process in `cwd`, its log (stderr) in `log`."""
    return spawn(env, cwd, log, "run", *options)


def wait_for(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    poll_s: float = 0.1,
    logs: Sequence[Path] = (),
) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail the test
    after `timeout` seconds, saying `what` was awaited (and showing `logs`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            shown = "".join(f"\n--- {log.name}\n{log.read_text()}" for log in logs)
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}{shown}")
        time.sleep(poll_s)


def log_events(log: Path, event: str) -> int:
    """How many lines of a process's log carry `event=EVENT` (key=value lines) or
    `"event": "EVENT"` (STOCKALERT_LOG_FORMAT=json)."""
    if not log.is_file():
        return 0
    name = re.escape(event)
    pattern = re.compile(rf'(?:^|\s)event={name}(?:\s|$)|"event": "{name}"', re.MULTILINE)
    return len(pattern.findall(log.read_text(errors="replace")))


def log_records(log: Path, event: str) -> list[dict[str, Any]]:
    """The `event=EVENT` lines of a JSON log (STOCKALERT_LOG_FORMAT=json), as objects; a
    line that is not a JSON object fails the test (every line must be one)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        if record.get("event") == event:
            found.append(record)
    return found


def more_events(log: Path, event: str, more: int = 2, timeout: float = 30) -> None:
    """Wait until `log` has `more` lines of `event` beyond those it has now: with `event`
    collection_cycle (or delivery_pass) and more=2, a whole cycle that began after this call
    has run (a `stockalert run -v` log; those lines are DEBUG)."""
    seen = log_events(log, event)
    wait_for(
        lambda: log_events(log, event) >= seen + more,
        timeout,
        f"{more} more event={event} lines in {log.name}",
        logs=[log],
    )


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> int:
    """SIGTERM, then wait for the exit (killed after `timeout` s); returns the exit status."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(process)
        pytest.fail(f"process {process.pid} did not exit within {timeout:g} s of SIGTERM")


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process (this one only, by its PID) unless it already ended; reap it."""
    if process.poll() is None:
        process.kill()
    process.wait()


class Runs:
    """Starts `stockalert run -v` processes (DEBUG: a line per collection cycle, which tests
    wait on); `kill_all` ends those still alive."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
        process = spawn_run(env, cwd, log, "-v")
        self.started.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.started:
            kill(process)

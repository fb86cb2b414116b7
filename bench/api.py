"""Benchmark: the gRPC API under load, driven by ghz against real server processes.

    python -m bench.api [--target embedded|roles|both] [--duration 10] [--clients 20]
                        [--users 20] [--case RPC ...] [--profile] [--keep]

Targets:
- `embedded`: `stockalert run` on SQLite (both services on one port), the way `make run`
  serves;
- `roles`: `stockalert serve command-api` and `stockalert serve query-api` as two processes
  on MariaDB (STOCKALERT_DB_URL of `scripts/dev-services`; a fresh database
  `stockalert_bench_api` next to it) and, when STOCKALERT_KAFKA_BOOTSTRAP is set, on Kafka
  as deployed (topics of a fresh prefix; every command's change goes out through the
  outbox relay, whose work counts in the command-api's CPU).

It registers `--users` users through the API (each watching the same five tickers), logs
them in, stores a quote per ticker, then runs each case for `--duration` seconds (after 2 s
unmeasured, so that pools are full) with ghz (`go install
github.com/bojand/ghz/cmd/ghz@v0.120.0` into .state/bin on first use; the API is given to it
as a protoset built from proto/, since its own parser rejects proto3 `optional`). ghz sends
one metadata set per run, so the clients are split over four ghz processes, each calling as
another user. SetSubscription sends a fresh request id each call (`{{newUUID}}`), so each
one executes. Per case: the rate, p50 and p99 over every call, the calls that failed, and
the serving process's CPU per call (`server_cpu_ms`, steadier than rates on a shared
machine). `--profile` samples the serving process with py-spy (`--gil`: only the thread
holding the GIL) during each case. One line per case:

    api target=roles case=GetLatestValue clients=20 rps=F p50_ms=F p99_ms=F errors=N server_cpu_ms=F
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import grpc
from bench.pipeline import bench_database, process_cpu_seconds, profiler, top_functions
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import insert
from tests.processes import clean_environ, free_port, wait_for

from stockalert.adapters.grpc.client import StockAlertClient
from stockalert.adapters.kafka.admin import KafkaAdministrator
from stockalert.adapters.kafka.topics import Topics
from stockalert.adapters.sql import tables
from stockalert.adapters.sql.engine import make_engine
from stockalert.api.v1 import stockalert_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
GHZ = ROOT / ".state" / "bin" / "ghz"
GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz@v0.120.0"
SECRET = "a-benchmark-token-signing-key-of-32-bytes"
TICKERS = ("AAA", "BBB", "CCC", "DDD", "EEE")
PACKAGE = "stockalert.v1"
WARM_UP_S = 2.0  # each case runs this long, unmeasured, first
GHZ_PROCESSES = 4  # clients are split over this many ghz processes, one user each


def ghz_binary() -> Path:
    """ghz in .state/bin, built with `go install` the first time."""
    if not GHZ.exists():
        print(f"bench: go install {GHZ_MODULE} into {GHZ.parent} (once)", flush=True)
        GHZ.parent.mkdir(parents=True, exist_ok=True)
        go = shutil.which("go")
        if go is None:
            raise SystemExit("bench: ghz is not installed and there is no `go` to build it")
        subprocess.run(
            [go, "install", GHZ_MODULE], env=os.environ | {"GOBIN": str(GHZ.parent)}, check=True
        )
    return GHZ


def protoset(work: Path) -> Path:
    """The API's descriptors, imports included, for ghz."""
    out = work / "stockalert.protoset"
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
            "--include_imports", f"--descriptor_set_out={out}", *protos,
        ],
        check=True,
    )  # fmt: skip
    return out


# ----- the servers -------------------------------------------------------------------------------


@attrs.frozen
class Target:
    """Where commands and queries go, and the process serving each."""

    name: str
    command_addr: str
    query_addr: str
    command_pid: int
    query_pid: int
    db_url: str


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "stockalert.entrypoints.cli", *args],
            cwd=log.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def serving(process: subprocess.Popen[bytes], address: str) -> bool:
    """True once the process's gRPC health service says SERVING."""
    if process.poll() is not None:
        raise SystemExit(f"bench: {process.args!r} exited {process.returncode} (see its log)")
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@contextmanager
def running(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def base_env(db_url: str, work: Path) -> dict[str, str]:
    workers = os.environ.get("STOCKALERT_GRPC_WORKERS")
    return (
        clean_environ()
        | ({"STOCKALERT_GRPC_WORKERS": workers} if workers else {})
        | {
            "STOCKALERT_DB_URL": db_url,
            "STOCKALERT_AUTH_SECRET": SECRET,
            "STOCKALERT_STATE_DIR": str(work / "state"),
            "STOCKALERT_OUTBOX_DIR": str(work / "outbox"),
        }
    )


@contextmanager
def embedded(work: Path) -> Iterator[Target]:
    """`stockalert run` on a fresh SQLite file; a replay source that collects nothing we
    measure (quotes are stored by `store_quotes`), an hour between cycles."""
    prices = work / "prices.csv"
    prices.write_text("timestamp,ticker,price\n2026-01-05T14:30:00+00:00,ZZZ,1.0\n")
    db_url = f"sqlite:///{work / 'embedded.db'}"
    address = f"127.0.0.1:{free_port()}"
    env = base_env(db_url, work) | {
        "STOCKALERT_GRPC_ADDR": address,
        "STOCKALERT_PRICE_SOURCE": f"replay:{prices}",
        "STOCKALERT_COLLECT_INTERVAL": "3600",
    }
    server = spawn(["run", "-q"], env, work / "embedded.log")
    with running([server]):
        wait_for(lambda: serving(server, address), 60, "stockalert run serving")
        yield Target("embedded", address, address, server.pid, server.pid, db_url)


@contextmanager
def kafka_topics(bootstrap: str) -> Iterator[dict[str, str]]:
    """Topics of a fresh prefix for the command-api's subscription changes (deleted after);
    the environment that points the roles at them."""
    topics = Topics(prefix=f"bench-api-{uuid.uuid4().hex[:8]}.")
    admin = KafkaAdministrator(bootstrap)
    admin.ensure_topics(topics.specs())
    try:
        yield {
            "STOCKALERT_KAFKA_BOOTSTRAP": bootstrap,
            "STOCKALERT_KAFKA_TOPIC_PREFIX": topics.prefix,
        }
    finally:
        admin.delete_topics([spec.name for spec in topics.specs()])


def stack_database(base_url: str) -> str:
    """A fresh, migrated `stockalert_bench_api` (kept after the run, for a look)."""
    with bench_database(base_url, "stockalert_bench_api") as url:
        return url


@contextmanager
def roles(work: Path, base_url: str, kafka: dict[str, str]) -> Iterator[Target]:
    """command-api and query-api on a fresh MariaDB database `stockalert_bench_api`; with
    Kafka, as deployed (each command's change goes out through the outbox relay)."""
    db_url = stack_database(base_url)
    command_addr, query_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = base_env(db_url, work) | {
        "STOCKALERT_GRPC_ADDR": command_addr,
        "STOCKALERT_QUERY_ADDR": query_addr,
        "STOCKALERT_READ_DB_URL": db_url,
        **kafka,
    }
    command = spawn(["serve", "command-api", "-q"], env, work / "command-api.log")
    query = spawn(["serve", "query-api", "-q"], env, work / "query-api.log")
    with running([command, query]):
        wait_for(
            lambda: serving(command, command_addr) and serving(query, query_addr),
            60,
            "the API roles",
        )
        yield Target("roles", command_addr, query_addr, command.pid, query.pid, db_url)


# ----- the data ----------------------------------------------------------------------------------


def register_users(target: Target, users: int) -> list[str]:
    """`users` accounts through the API, each watching TICKERS; their tokens."""
    tokens = []
    run = uuid.uuid4().hex[:8]
    for n in range(users):
        email, password = f"bench-{run}-{n}@example.com", "a-bench-password"
        with StockAlertClient(target.command_addr, target.query_addr) as client:
            client.register(
                email,
                password,
                [pb.SubscriptionSpec(ticker=t, high_value=1000.0, low_value=1.0) for t in TICKERS],
            )
            tokens.append(client.login(email, password).token)
    return tokens


def store_quotes(db_url: str) -> None:
    """A quote per ticker, as the collector stores them."""
    engine = make_engine(db_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(tables.quotes),
            [
                {"ticker": t, "price": 100.0 + n, "quoted_at": now, "collected_at": now}
                for n, t in enumerate(TICKERS)
            ],
        )
    engine.dispose()


# ----- the load ----------------------------------------------------------------------------------


@attrs.frozen
class Case:
    name: str
    service: str  # "command" or "query"
    data: list[dict[str, Any]]
    clients: int


def cases(clients: int) -> list[Case]:
    latest = [{"ticker": t} for t in TICKERS]
    set_sub = [
        {"request_id": "{{newUUID}}", "ticker": t, "high_value": 900.0 + n, "low_value": 2.0}
        for n, t in enumerate(TICKERS)
    ]
    return [
        Case("GetLatestValue", "query", latest, clients),
        Case("GetLatestValue", "query", latest, 1),
        Case("ListSubscriptions", "query", [{}], clients),
        Case("SetSubscription", "command", set_sub, clients),
    ]


SERVICE = {"command": "CommandService", "query": "QueryService"}


def run_case(
    ghz: Path, descriptors: Path, target: Target, case: Case, tokens: list[str], duration_s: float
) -> tuple[int, float, list[float], dict[str, int]]:
    """The case from `case.clients` clients, split over up to GHZ_PROCESSES ghz processes,
    each calling as another user (ghz sends one metadata set per run). Returns the calls
    made, the rate, every call's latency (ms) and the count per status."""
    address = target.command_addr if case.service == "command" else target.query_addr
    splits = min(GHZ_PROCESSES, case.clients, len(tokens))
    runs = []
    for n in range(splits):
        clients = case.clients // splits + (1 if n < case.clients % splits else 0)
        metadata = {"authorization": f"Bearer {tokens[n]}"}
        runs.append(
            subprocess.Popen(
                [
                    str(ghz), "--insecure", "--protoset", str(descriptors),
                    "--call", f"{PACKAGE}.{SERVICE[case.service]}.{case.name}",
                    "--data", json.dumps(case.data), "--metadata", json.dumps(metadata),
                    "--concurrency", str(clients), "--connections", "1",
                    "--duration", f"{duration_s:g}s", "--duration-stop", "wait",
                    "--format", "json", "--timeout", "10s",
                    address,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )  # fmt: skip
    calls, rate, latencies, statuses = 0, 0.0, [], Counter[str]()
    for run in runs:
        out, err = run.communicate()
        if not out.strip():
            raise RuntimeError(f"ghz failed ({run.returncode}): {err.strip()}")
        report = json.loads(out)
        calls += int(report["count"])
        rate += float(report["rps"])
        latencies += [float(d["latency"]) / 1e6 for d in report.get("details") or []]
        statuses.update(report.get("statusCodeDistribution") or {})
        if report.get("errorDistribution"):
            print(f"bench: {case.name} errors: {report['errorDistribution']}", flush=True)
    return calls, rate, latencies, dict(statuses)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(
    ghz: Path, descriptors: Path, target: Target, tokens: list[str], args: argparse.Namespace
) -> None:
    for case in cases(args.clients):
        if args.case and case.name not in args.case:
            continue
        pid = target.command_pid if case.service == "command" else target.query_pid
        raw = Path(args.work) / f"profile-{target.name}-{case.name}-{case.clients}.txt"
        run_case(ghz, descriptors, target, case, tokens, WARM_UP_S)  # pools filled, code warm
        before = process_cpu_seconds(pid)
        with profiler(pid, raw, args.profile, gil=True):
            calls, rate, latencies, statuses = run_case(
                ghz, descriptors, target, case, tokens, args.duration
            )
        used = process_cpu_seconds(pid) - before
        errors = sum(n for code, n in statuses.items() if code != "OK")
        print(
            f"api target={target.name} case={case.name} clients={case.clients} "
            f"rps={rate:.1f} p50_ms={percentile(latencies, 0.5):.2f} "
            f"p99_ms={percentile(latencies, 0.99):.2f} errors={errors} "
            f"server_cpu_ms={1000 * used / max(calls, 1):.2f}",
            flush=True,
        )
        if args.profile and raw.exists():
            print("\n".join(top_functions(raw)), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=("embedded", "roles", "both"), default="both")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per case")
    parser.add_argument("--clients", type=int, default=20, help="concurrent ghz clients")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--case", action="append", help="only this RPC (repeatable)")
    parser.add_argument("--profile", action="store_true", help="py-spy the serving process")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    targets = ["embedded", "roles"] if args.target == "both" else [args.target]
    base_url = os.environ.get("STOCKALERT_DB_URL", "")
    if "roles" in targets and not base_url.startswith("mysql"):
        parser.error("--target roles needs STOCKALERT_DB_URL of MariaDB (scripts/dev-services)")
    ghz = ghz_binary()
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    args.work = str(work)
    try:
        descriptors = protoset(work)
        for name in targets:
            with ExitStack() as stack:
                folder = work / name
                folder.mkdir()
                if name == "embedded":
                    target = stack.enter_context(embedded(folder))
                else:
                    bootstrap = os.environ.get("STOCKALERT_KAFKA_BOOTSTRAP", "")
                    kafka = stack.enter_context(kafka_topics(bootstrap)) if bootstrap else {}
                    print(f"bench: roles {'with' if kafka else 'without'} Kafka", flush=True)
                    target = stack.enter_context(roles(folder, base_url, kafka))
                tokens = register_users(target, args.users)
                store_quotes(target.db_url)
                measure(ghz, descriptors, target, tokens, args)
    finally:
        if args.keep:
            print(f"bench: logs in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

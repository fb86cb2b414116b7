"""Benchmark: the distributed pipeline, every role its own process, on the real services.

    python -m bench.pipeline [--users 10000] [--tickers 500] [--rate 200] [--paced-s 30]
                             [--alert-systems 1] [--notifiers 1] [--profile ROLE]

Needs MariaDB and the 3-broker Kafka cluster of `scripts/dev-services` (`make
bench-pipeline` starts them): STOCKALERT_DB_URL (a database `stockalert_bench` is created
next to it, fresh each run) and STOCKALERT_KAFKA_BOOTSTRAP (topics of a fresh prefix,
deleted afterwards). The SMTP server is an aiosmtpd "250 OK" sink in a child process that
writes down when it accepted each Message-ID.

All seven roles run as `stockalert serve ROLE` processes (command-api, query-api and
cleaner idle beside the pipeline, as they would in production). The users and their
subscriptions are stored through the library before the roles start (10,000 registrations
through the API would measure Argon2, not the pipeline). Each user watches `--per-user`
tickers above 101. The collector replays price files:

1. the storm: every ticker at 102 in one cycle, one notification per subscription (20,000
   with the defaults) at once. Throughput = notifications / (last SMTP acceptance - the
   publish time of the first quote), so the figure includes getting through the pipeline;
2. back to 99 (every side re-arms, nothing is sent), then paced: each 1 s cycle moves just
   enough tickers to 102 for `--rate` notifications, for `--paced-s` seconds. Latency =
   SMTP acceptance - the publish time of the quote (its Kafka timestamp on
   to-alert-system), p50 and p99 over the paced notifications.

What must be mailed is computed by the in-memory reference engine from the same
subscriptions and quotes: `lost` are expected notifications the server never accepted,
`duplicated` are acceptances beyond one per expected notification. With `--profile ROLE`,
py-spy samples that role during the storm (top functions, written next to the logs).
The last line is machine-readable:

    pipeline notifications=N per_s=F p50_ms=F p99_ms=F lost=0 duplicated=0
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import attrs
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url
from tests.processes import clean_environ, free_port
from tests.smtp_server import HOST, notification_id_of, sink_process

from stockalert.adapters.kafka.admin import KafkaAdministrator
from stockalert.adapters.kafka.codec import CodecError, decode
from stockalert.adapters.kafka.topics import Topics
from stockalert.adapters.sql import tables
from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.migrate import upgrade
from stockalert.domain.alerting.reference import ReferenceAlertEngine
from stockalert.domain.events import PriceUpdated
from stockalert.domain.model import Email, Quote, Subscription, Ticker

START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
STEP = timedelta(minutes=1)
HIGH, ABOVE, BELOW = 101.0, 102.0, 99.0
SECRET = "a-benchmark-token-signing-key-of-32-bytes"
MAILPIT = Path(__file__).resolve().parents[1] / ".state" / "bin" / "mailpit"
T = TypeVar("T")


class Timeout(RuntimeError):
    """A phase did not finish in time."""


def wait_for(condition: Callable[[], T], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.2)


# ----- the scenario ------------------------------------------------------------------------------


def subscriptions(
    users: int, tickers: int, per_user: int, rng: random.Random
) -> list[Subscription]:
    names = [f"B{n:03d}" for n in range(tickers)]
    subs = []
    for n in range(users):
        user_id = f"u{n:05d}{uuid.uuid4().hex[:10]}"
        email = Email(f"user{n}@example.com")
        subs += [
            Subscription(uuid.uuid4().hex, user_id, email, Ticker(ticker), high_value=HIGH)
            for ticker in rng.sample(names, per_user)
        ]
    return subs


def storm(tickers: Sequence[str]) -> list[list[Quote]]:
    return [[Quote(Ticker(t), ABOVE, START + STEP) for t in tickers]]


def paced(
    tickers: Sequence[str], per_ticker: Counter[str], rate: int, seconds: int
) -> list[list[Quote]]:
    """Back to 99 everywhere, then `seconds` cycles each moving tickers to 102 for about
    `rate` notifications (each ticker once: it stays above afterwards)."""
    at = START + 2 * STEP
    cycles = [[Quote(Ticker(t), BELOW, at) for t in tickers]]
    unused = sorted(tickers, key=lambda t: -per_ticker[t])
    for _ in range(seconds):
        at += STEP
        cycle, count = [], 0
        while unused and count < rate:
            ticker = unused.pop()  # the least followed first: the rate is approached closely
            cycle.append(Quote(Ticker(ticker), ABOVE, at))
            count += per_ticker[ticker]
        if not cycle:
            break
        cycles.append(cycle)
    return cycles


def expected(subs: Sequence[Subscription], cycles: Sequence[Sequence[Quote]]) -> set[str]:
    engine = ReferenceAlertEngine()
    for sub in subs:
        engine.upsert(sub)
    return {n.notification_id for cycle in cycles for q in cycle for n in engine.apply(q)}


def write_prices(path: Path, cycles: Sequence[Sequence[Quote]]) -> Path:
    lines = ["timestamp,ticker,price"]
    for cycle in cycles:
        lines += [f"{q.quoted_at.isoformat()},{q.ticker.value},{q.price}" for q in cycle]
    path.write_text("\n".join(lines) + "\n")
    return path


# ----- services ----------------------------------------------------------------------------------


@contextmanager
def bench_database(base_url: str, name: str = "stockalert_bench") -> Iterator[str]:
    """A fresh database `name` next to `base_url`, migrated."""
    url = make_url(base_url).set(database=name)
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    rendered = url.render_as_string(hide_password=False)
    engine = make_engine(rendered)
    upgrade(engine)
    engine.dispose()
    yield rendered


def seed(db_url: str, subs: Sequence[Subscription]) -> None:
    """Users and subscriptions, as the command side stores them (bulk, no events)."""
    engine = make_engine(db_url)
    users = {s.user_id: s.email for s in subs}
    with engine.begin() as conn:
        conn.execute(
            insert(tables.users),
            [
                {"user_id": u, "email": e.value, "password_hash": "-", "created_at": START}
                for u, e in users.items()
            ],
        )
        conn.execute(
            insert(tables.subscriptions),
            [
                {
                    "subscription_id": s.subscription_id,
                    "user_id": s.user_id,
                    "ticker": s.ticker.value,
                    "high_value": s.high_value,
                    "low_value": s.low_value,
                    "rearm_percent": s.rearm_percent,
                    "cooldown_s": s.cooldown_s,
                    "remind_every_s": s.remind_every_s,
                }
                for s in subs
            ],
        )
    engine.dispose()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (the notifier's
    message-building worker counts as the notifier's)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    used = sum(int(fields[n]) for n in (11, 12, 13, 14)) / tick  # utime stime cutime cstime
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = children.read_text().split()
        except OSError:
            continue
        used += sum(process_cpu_seconds(int(kid)) for kid in kids)
    return used


class Roles:
    """`stockalert serve ROLE` processes with one environment; logs in `logs/`."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, role: str, **env: str) -> subprocess.Popen[bytes]:
        count = sum(r == role for r, _, _ in self.running) + 1
        log = self.logs / f"{role}-{count}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "stockalert.entrypoints.cli", "serve", role],
                env=self.env | env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.running.append((role, process, log))
        return process

    def logged(self, role: str, event: str) -> bool:
        return all(
            f"event={event}" in log.read_text(errors="replace")
            for r, _, log in self.running
            if r == role
        )

    def check_alive(self) -> None:
        for role, process, log in self.running:
            if process.poll() is not None and process.returncode != 0:
                raise RuntimeError(f"{role} exited {process.returncode}: see {log}")

    def stop(self, process: subprocess.Popen[bytes]) -> int:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time each running role process (and its children that ended) has used."""
        return {
            log.stem: process_cpu_seconds(process.pid)
            for _, process, log in self.running
            if process.poll() is None
        }

    def stop_all(self) -> dict[str, int]:
        for _, process, _ in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for _role, process, log in self.running:
            try:
                codes[log.stem] = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[log.stem] = process.wait()
        return codes


class Mailpit:
    """Mailpit (`scripts/dev-services start mailpit` builds it into .state/bin) as the SMTP
    server, on ports of its own, every message kept; the same face as the sink."""

    def __init__(self, binary: Path, work: Path) -> None:
        self.port, self._ui = free_port(), free_port()
        self._log = (work / "mailpit.log").open("wb")
        self._process = subprocess.Popen(
            [
                str(binary),
                "--smtp", f"{HOST}:{self.port}",
                "--listen", f"{HOST}:{self._ui}",
                "--max", "0",
                "--database", str(work / "mailpit.db"),
                "--disable-version-check",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.pid: int | None = self._process.pid
        wait_for(lambda: self._get("/api/v1/messages?limit=1") is not None, 30, "Mailpit")

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self._ui}{path}", timeout=10) as answer:
                return dict(json.load(answer))
        except OSError:
            return None

    @property
    def accepted(self) -> int:
        found = self._get("/api/v1/messages?limit=1")
        return int(found["total"]) if found else 0

    def records(self) -> list[tuple[float, str]]:
        """(acceptance time, Message-ID) of every message, from Mailpit's API."""
        found: list[tuple[float, str]] = []
        while True:
            page = self._get(f"/api/v1/messages?start={len(found)}&limit=1000")
            messages = page["messages"] if page else []
            if not messages:
                return found
            found += [
                (datetime.fromisoformat(m["Created"]).timestamp(), f"<{m['MessageID']}>")
                for m in messages
            ]

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=30)
        self._log.close()


# ----- what came out -----------------------------------------------------------------------------


def accepted(server: Any, record: Path) -> list[tuple[float, str]]:
    """(acceptance time, notification id) per message the SMTP server accepted."""
    if isinstance(server, Mailpit):
        return [(at, notification_id_of(mid)) for at, mid in server.records()]
    found = []
    for line in record.read_text().splitlines():
        at, message_id = line.split(" ", 1)
        found.append((float(at), notification_id_of(message_id)))
    return found


def publish_times(bootstrap: str, topic: str) -> dict[tuple[str, datetime], float]:
    """(ticker, quote time) -> when its PriceUpdated was published (Kafka timestamp, s)."""
    reader = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-reader", "enable.auto.commit": False}
    )
    partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {}
    for p in partitions:
        _, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        ends[p] = high
    reader.assign([TopicPartition(topic, p, 0) for p in partitions])
    times: dict[tuple[str, datetime], float] = {}
    seen = Counter[int]()
    deadline = time.monotonic() + 60
    while any(seen[p] < ends[p] for p in partitions) and time.monotonic() < deadline:
        for message in reader.consume(num_messages=1000, timeout=0.5):
            if message.error() is not None:
                continue
            seen[message.partition() or 0] = (message.offset() or 0) + 1
            try:
                event = decode(message.value())
            except CodecError:
                continue
            if isinstance(event, PriceUpdated):
                key = (event.quote.ticker.value, event.quote.quoted_at)
                times.setdefault(key, message.timestamp()[1] / 1000)
    reader.close()
    return times


def quotes_of(db_url: str) -> dict[str, tuple[str, datetime]]:
    """Notification id -> (ticker, quote time), from the ledger."""
    n = tables.notifications.c
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(n.notification_id, n.ticker, n.quoted_at))
        found = {row.notification_id: (row.ticker, row.quoted_at) for row in rows}
    engine.dispose()
    return found


def pending(db_url: str) -> int:
    n = tables.notifications.c
    engine = make_engine(db_url)
    with engine.connect() as conn:
        count = conn.scalar(
            select(text("count(*)")).select_from(tables.notifications).where(n.status == "PENDING")
        )
    engine.dispose()
    return int(count or 0)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def profiler(pid: int, out: Path, enabled: bool, gil: bool = False) -> Iterator[None]:
    """py-spy sampling `pid` while the block runs (if asked and installed); with `gil`, only
    the samples of the thread holding the GIL (where a GIL-bound process spends its CPU)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not enabled or not Path(spy).exists():
        if enabled:
            print("bench: py-spy not installed (pip install py-spy); no profile", flush=True)
        yield
        return
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
    process = subprocess.Popen(
        [*command, "--rate", "50", *(["--gil"] if gil else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def top_functions(raw: Path, count: int = 15) -> list[str]:
    """The functions most often on the stack ("inclusive") and on top ("self") in a py-spy
    raw (collapsed stacks) file."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    lines = [f"samples={total}", "self:"]
    lines += [f"  {100 * n / total:5.1f}% {f}" for f, n in own.most_common(count)]
    return lines


# ----- the run -----------------------------------------------------------------------------------


@attrs.frozen
class Plan:
    """The scenario: subscriptions, the storm's and the paced phase's price cycles, and the
    notification ids each must give."""

    subs: list[Subscription]
    tickers: list[str]
    storm: list[list[Quote]]
    paced: list[list[Quote]]
    storm_ids: set[str]
    all_ids: set[str]

    @property
    def paced_ids(self) -> set[str]:
        return self.all_ids - self.storm_ids

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        subs = subscriptions(args.users, args.tickers, args.per_user, random.Random(13))
        names = sorted({s.ticker.value for s in subs})
        per_ticker = Counter(s.ticker.value for s in subs)
        storm_cycles = storm(names)
        paced_cycles = paced(names, per_ticker, args.rate, args.paced_s)
        return cls(
            subs,
            names,
            storm_cycles,
            paced_cycles,
            expected(subs, storm_cycles),
            expected(subs, storm_cycles + paced_cycles),
        )


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--per-user", type=int, default=2)
    parser.add_argument("--rate", type=int, default=200, help="notifications/s when paced")
    parser.add_argument("--paced-s", type=int, default=30)
    parser.add_argument("--alert-systems", type=int, default=1)
    parser.add_argument("--notifiers", type=int, default=1)
    parser.add_argument("--smtp-connections", type=int, default=4, help="per notifier")
    parser.add_argument(
        "--build-processes", type=int, default=1, help="message-building workers per notifier"
    )
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--smtp",
        choices=("sink", "mailpit"),
        default="sink",
        help="the SMTP server: an aiosmtpd sink (Python) or Mailpit (Go; scripts/dev-services "
        "start mailpit builds it)",
    )
    parser.add_argument("--timeout-s", type=float, default=600, help="per phase")
    parser.add_argument("--profile", choices=("alert-system", "notifier", "collector"))
    parser.add_argument("--keep", action="store_true", help="keep the logs folder")
    return parser.parse_args(argv)


def role_environment(
    args: argparse.Namespace, db_url: str, work: Path, port: int
) -> dict[str, str]:
    return clean_environ() | {
        "STOCKALERT_DB_URL": db_url,
        "STOCKALERT_STATE_DIR": str(work / "state"),
        "STOCKALERT_AUTH_SECRET": SECRET,
        "STOCKALERT_GRPC_ADDR": f"{HOST}:{free_port()}",
        "STOCKALERT_QUERY_ADDR": f"{HOST}:{free_port()}",
        "STOCKALERT_KAFKA_BOOTSTRAP": args.bootstrap,
        "STOCKALERT_KAFKA_TOPIC_PREFIX": args.topics.prefix,
        "STOCKALERT_KAFKA_PARTITIONS": str(args.partitions),
        "STOCKALERT_SMTP_HOST": HOST,
        "STOCKALERT_SMTP_PORT": str(port),
        "STOCKALERT_SMTP_STARTTLS": "false",
        "STOCKALERT_SMTP_CONNECTIONS": str(args.smtp_connections),
        "STOCKALERT_SMTP_BUILD_PROCESSES": str(args.build_processes),
        "STOCKALERT_COLLECT_INTERVAL": "1",
        "STOCKALERT_CLEAN_INTERVAL": "600",
    }


def start_roles(args: argparse.Namespace, roles: Roles) -> dict[str, subprocess.Popen[bytes]]:
    """Every role but the collector; returns the first alert-system and notifier."""
    roles.start("kafka-admin")
    wait_for(lambda: roles.logged("kafka-admin", "kafka_cluster"), 60, "the topics")
    for role in ("command-api", "query-api", "cleaner"):
        roles.start(role)
    alert_systems = [roles.start("alert-system") for _ in range(args.alert_systems)]
    notifiers = [roles.start("notifier") for _ in range(args.notifiers)]
    wait_for(
        lambda: (
            roles.logged("alert-system", "kafka_partitions_assigned")
            and roles.logged("notifier", "kafka_partitions_assigned")
        ),
        120,
        "partitions assigned",
    )
    return {"alert-system": alert_systems[0], "notifier": notifiers[0]}


def run_phases(args: argparse.Namespace, plan: Plan, roles: Roles, sink: Any, work: Path) -> None:
    """The storm (profiled, if asked), then the paced phase, each by its own collector."""
    first = start_roles(args, roles)
    prices = write_prices(work / "storm.csv", plan.storm)
    collector = roles.start("collector", STOCKALERT_PRICE_SOURCE=f"replay:{prices}")
    target = {**first, "collector": collector}.get(args.profile or "", collector)
    with profiler(target.pid, work / "profile.txt", args.profile is not None):
        t0 = time.monotonic()

        def storm_done() -> bool:
            roles.check_alive()
            return bool(sink.accepted >= len(plan.storm_ids))

        wait_for(storm_done, args.timeout_s, f"{len(plan.storm_ids)} storm e-mails")
    print(f"bench: storm delivered in {time.monotonic() - t0:.1f} s (wall)", flush=True)
    roles.stop(collector)

    prices = write_prices(work / "paced.csv", plan.paced)
    roles.start("collector", STOCKALERT_PRICE_SOURCE=f"replay:{prices}")

    def paced_done() -> bool:
        roles.check_alive()
        return bool(sink.accepted >= len(plan.all_ids))

    wait_for(paced_done, args.timeout_s + args.paced_s, f"{len(plan.all_ids)} e-mails in all")


@attrs.frozen
class Result:
    notifications: int
    per_s: float
    latencies_ms: list[float]
    lost: int
    duplicated: int


def measure(args: argparse.Namespace, plan: Plan, db_url: str, server: Any, record: Path) -> Result:
    """Throughput of the storm and latency of the paced phase from the SMTP sink's record,
    the quotes' publish times on to-alert-system and the ledger."""
    got = accepted(server, record)
    mailed = Counter(nid for _, nid in got)
    first_at: dict[str, float] = {}
    for at, nid in got:
        first_at.setdefault(nid, at)
    published = publish_times(args.bootstrap, args.topics.to_alert_system)
    quote_of = quotes_of(db_url)
    storm_published = min(published[(t, START + STEP)] for t in plan.tickers)
    storm_times = [first_at[n] for n in plan.storm_ids if n in first_at]
    paced_ids = plan.paced_ids
    latencies = [1000 * (first_at[n] - published[quote_of[n]]) for n in paced_ids if n in first_at]
    paced_times = [first_at[n] for n in paced_ids if n in first_at]
    span = max(paced_times) - min(paced_times)
    print(
        f"bench: storm {len(plan.storm_ids)} in {max(storm_times) - storm_published:.1f} s "
        f"from the first quote's publish "
        f"({len(storm_times) / max(1e-9, max(storm_times) - min(storm_times)):.0f}/s from the "
        f"first e-mail); paced {len(paced_ids)} over {span:.1f} s "
        f"({len(paced_ids) / max(span, 1e-9):.0f}/s), latency p50 "
        f"{percentile(latencies, 0.5):.0f} ms p90 {percentile(latencies, 0.9):.0f} ms p99 "
        f"{percentile(latencies, 0.99):.0f} ms max {max(latencies):.0f} ms",
        flush=True,
    )
    return Result(
        notifications=len(mailed),
        per_s=len(plan.storm_ids) / (max(storm_times) - storm_published),
        latencies_ms=latencies,
        lost=len(plan.all_ids - set(mailed)),
        duplicated=sum(n - 1 for n in mailed.values()) + len(set(mailed) - plan.all_ids),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    db_base = os.environ.get("STOCKALERT_DB_URL", "")
    args.bootstrap = os.environ.get("STOCKALERT_KAFKA_BOOTSTRAP", "")
    if not db_base.startswith("mysql") or not args.bootstrap:
        print(
            "bench.pipeline needs STOCKALERT_DB_URL (MariaDB) and STOCKALERT_KAFKA_BOOTSTRAP: "
            "scripts/dev-services start && source .state/services.env",
            file=sys.stderr,
        )
        return 2
    if args.smtp == "mailpit" and not MAILPIT.exists():
        print(f"bench.pipeline --smtp mailpit needs {MAILPIT}: scripts/dev-services start mailpit")
        return 2
    plan = Plan.of(args)
    print(
        f"bench: {args.users} users, {len(plan.subs)} subscriptions over {len(plan.tickers)} "
        f"tickers; storm {len(plan.storm_ids)} notifications, paced {len(plan.paced_ids)} at "
        f"~{args.rate}/s",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    (work / "logs").mkdir()
    args.topics = Topics(prefix=f"bench-{uuid.uuid4().hex[:8]}.", partitions=args.partitions)
    record = work / "accepted.txt"
    with ExitStack() as stack:
        db_url = stack.enter_context(bench_database(db_base))
        sink: Any
        if args.smtp == "mailpit":
            sink = Mailpit(MAILPIT, work)
            stack.callback(sink.close)
        else:
            sink = stack.enter_context(sink_process(record, lifetime_s=4 * args.timeout_s))
        names = [spec.name for spec in args.topics.specs()]
        stack.callback(lambda: KafkaAdministrator(args.bootstrap).delete_topics(names))
        started = time.monotonic()
        seed(db_url, plan.subs)
        print(f"bench: seeded in {time.monotonic() - started:.1f} s", flush=True)
        roles = Roles(role_environment(args, db_url, work, sink.port), work / "logs")
        stack.callback(roles.stop_all)
        run_phases(args, plan, roles, sink, work)
        wait_for(lambda: pending(db_url) == 0, 60, "no PENDING notification left")
        cpu = roles.cpu_seconds()
        if sink.pid is not None:
            cpu["smtp-sink"] = process_cpu_seconds(sink.pid)
        codes = roles.stop_all()
        result = measure(args, plan, db_url, sink, record)
        print(
            "bench: CPU seconds per role process: "
            + ", ".join(f"{name} {used:.1f}" for name, used in sorted(cpu.items()))
        )
        bad = {name: code for name, code in codes.items() if code != 0}
        print(f"bench: roles stopped with SIGTERM, exit codes not 0: {bad or 'none'}")
        if args.profile and (work / "profile.txt").exists():
            print(f"bench: profile of {args.profile} during the storm (py-spy, {work}):")
            print("\n".join(top_functions(work / "profile.txt")))
        if args.keep or bad:
            print(f"bench: logs kept in {work / 'logs'}")
        else:
            stack.callback(shutil.rmtree, work, True)
        latencies = result.latencies_ms
        print(
            f"pipeline notifications={result.notifications} per_s={result.per_s:.1f} "
            f"p50_ms={percentile(latencies, 0.5):.1f} p99_ms={percentile(latencies, 0.99):.1f} "
            f"lost={result.lost} duplicated={result.duplicated}"
        )
    return 0 if result.lost == 0 and result.duplicated == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

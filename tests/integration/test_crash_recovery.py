"""`stockalert run` stopped or killed and started again: no alert repeated, none lost.

Both tests drive the real process. The first restarts an embedded run on a SQLite file after
a threshold was changed and set back: the start-up must not fire again for a quote that was
already applied. The second SIGKILLs a run on MariaDB several times while every
subscription fires each collection cycle, and compares the e-mails an SMTP server received
with the set computed from the replay file.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

from stockalert.adapters.grpc.client import StockAlertClient
from stockalert.api.v1 import stockalert_pb2 as pb
from tests.integration.conftest import mariadb_url, worker_database_url
from tests.processes import (
    Runs,
    clean_environ,
    free_port,
    kill,
    log_events,
    more_events,
    ok,
    run_cli,
    stop,
    wait_for,
    wait_until_serving,
)
from tests.replay import write_replay
from tests.smtp_server import SmtpServer, notification_id_of, smtp_environ

EXAMPLE_PRICES = Path(__file__).resolve().parents[2] / "examples" / "prices.csv"
PASSWORD = "password123"
REARM_PERCENT = 1.0  # the default re-arm band
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def runs() -> Iterator[Runs]:
    """Starts `stockalert run` processes; every one still alive is SIGKILLed at the end."""
    started = Runs()
    try:
        yield started
    finally:
        started.kill_all()


# ----- a restart after a threshold was changed and set back (SQLite, .eml outbox) ---------


def crossings(prices: list[float], threshold: float, side: str) -> list[float]:
    """The prices that fire one side ("HIGH": above the threshold, "LOW": below it) of a
    subscription set before them: beyond the threshold while armed; re-armed once back
    inside by the re-arm band (HIGH at or below threshold * 0.99, LOW at or above * 1.01)."""
    band = REARM_PERCENT / 100
    fired, armed = [], True
    for price in prices:
        beyond = price > threshold if side == "HIGH" else price < threshold
        back = (
            price <= threshold * (1 - band) if side == "HIGH" else price >= threshold * (1 + band)
        )
        if armed and beyond:
            fired.append(price)
            armed = False
        elif not armed and back:
            armed = True
    return fired


def example_prices(ticker: str) -> list[float]:
    """The prices of `ticker` in examples/prices.csv, oldest first."""
    with EXAMPLE_PRICES.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["ticker"] == ticker]
    return [float(row["price"]) for row in sorted(rows, key=lambda row: row["timestamp"])]


def one_more_cycle(log: Path, timeout: float = 30) -> None:
    """Wait until the run has logged a whole collection cycle that began after this call
    (its quotes stored and their alerts handled: the next cycle's line comes after that)."""
    more_events(log, "collection_cycle", 2, timeout)


def emls(outbox: Path) -> list[str]:
    return sorted(p.name for p in outbox.glob("*.eml")) if outbox.is_dir() else []


def test_a_restart_does_not_alert_again_for_a_quote_already_applied(
    tmp_path: Path, runs: Runs
) -> None:
    """A HIGH threshold changed and set back without a new quote is not fired on restart by
    re-applying the last stored quote: the e-mails stay those of the crossings."""
    aapl = example_prices("AAPL")
    expected = crossings(aapl, 190.0, "HIGH")
    assert expected == [190.55, 191.30]  # crosses, stays inside the band, re-arms, crosses
    outbox = tmp_path / "outbox"

    def start(number: int) -> tuple[subprocess.Popen[bytes], Path, Cli]:
        address = f"127.0.0.1:{free_port()}"
        env = clean_environ() | {
            "STOCKALERT_DB_URL": f"sqlite:///{tmp_path / 'stockalert.db'}",
            "STOCKALERT_PRICE_SOURCE": f"replay:{EXAMPLE_PRICES}",
            "STOCKALERT_COLLECT_INTERVAL": "0.2",
            "STOCKALERT_GRPC_ADDR": address,
            "STOCKALERT_OUTBOX_DIR": str(outbox),
            "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "server-config"),
        }
        log = tmp_path / f"run-{number}.log"
        server = runs.start(env, tmp_path, log)
        wait_until_serving(address, server, timeout=30)
        cli_env = clean_environ() | {
            "STOCKALERT_GRPC_ADDR": address,
            "XDG_CONFIG_HOME": str(tmp_path / "config-alice"),  # the same token file
        }

        def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
            return run_cli(cli_env, *args, stdin=stdin)

        return server, log, cli

    def notification_prices(cli: Cli) -> list[float]:
        notes = json.loads(ok(cli("--json", "notifications"))).get("notifications", [])
        return sorted(n["price"] for n in notes)

    # First run: two crossings, two e-mails.
    first, log, cli = start(1)
    ok(cli("register", "alice@example.com", "--password-stdin", stdin=PASSWORD + "\n"))
    ok(cli("watch", "AAPL", "--high", "190"))

    def replay_over() -> bool:
        latest = cli("--json", "latest", "AAPL")
        return latest.returncode == 0 and json.loads(latest.stdout)["value"] == aapl[-1]

    wait_for(replay_over, 30, f"AAPL at its last replayed price {aapl[-1]}")
    wait_for(lambda: len(emls(outbox)) >= len(expected), 30, "the e-mails of both crossings")
    one_more_cycle(log)
    mailed = emls(outbox)
    assert len(mailed) == len(expected), mailed
    assert notification_prices(cli) == expected

    # The threshold moves away and back; no quote arrives in between: no e-mail.
    ok(cli("watch", "AAPL", "--high", "200"))
    ok(cli("watch", "AAPL", "--high", "190"))
    one_more_cycle(log)
    assert emls(outbox) == mailed
    assert stop(first) == 0

    # Second run on the same database, state dir and outbox: nothing new to send.
    _, log, cli = start(2)
    wait_for(lambda: log_events(log, "started"), 30, "event=started in run-2.log")
    one_more_cycle(log)
    assert emls(outbox) == mailed, (
        f"the restart sent {len(emls(outbox)) - len(mailed)} e-mail(s) again for a quote "
        f"already applied: {sorted(set(emls(outbox)) - set(mailed))}"
    )
    assert notification_prices(cli) == expected


# ----- SIGKILLs during an alert storm (MariaDB, SMTP) --------------------------------------

SEED = 20260105
STORM_USERS = 40
FLAT = {"AAPL": 100.0, "MSFT": 200.0, "GOOG": 300.0}  # inside every threshold
FLAT_CYCLES = 30  # inside every threshold while the subscriptions are set up (~1 s)
SWINGS = 12  # then above every HIGH, below every LOW, above... one timestamp each
KILLS = 3
STORM_INTERVAL_S = "0.1"
STORM_BUDGET_S = 150.0  # for everything after the set-up (~30-55 s on 2 cores, alone)
START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
SIDES = {pb.SIDE_HIGH: "HIGH", pb.SIDE_LOW: "LOW"}
Alert = tuple[str, str, str, int]  # e-mail, ticker, side, episode


@attrs.frozen
class Storm:
    """The replay file's prices and each subscription's thresholds, from one seed."""

    users: list[str]
    thresholds: dict[tuple[str, str], tuple[float, float]]  # (e-mail, ticker): (high, low)
    prices: list[dict[str, float]]  # one entry per timestamp

    @classmethod
    def generate(cls, rng: random.Random) -> Storm:
        users = [f"user{n:02d}@example.com" for n in range(STORM_USERS)]
        thresholds = {
            (user, ticker): (
                round(flat * rng.uniform(1.02, 1.10), 2),
                round(flat * rng.uniform(0.90, 0.98), 2),
            )
            for user in users
            for ticker, flat in FLAT.items()
        }
        prices = [dict(FLAT) for _ in range(FLAT_CYCLES)]
        for swing in range(SWINGS):
            quotes = {}
            for ticker in FLAT:
                highs, lows = zip(*(thresholds[user, ticker] for user in users), strict=True)
                if swing % 2 == 0:  # above every HIGH by 5 % or more
                    price = max(highs) * 1.05 * rng.uniform(1.0, 1.02)
                else:  # below every LOW by 5 % or more
                    price = min(lows) * 0.95 * rng.uniform(0.98, 1.0)
                quotes[ticker] = round(price, 2)
            prices.append(quotes)
        return cls(users, thresholds, prices)

    def timestamp(self, index: int) -> datetime:
        return START + timedelta(minutes=index)

    def write(self, path: Path) -> Path:
        return write_replay(path, self.prices, START)

    def expected(self) -> set[Alert]:
        """Every e-mail the replay must cause: episode n of a side is its n-th crossing."""
        alerts: set[Alert] = set()
        for (user, ticker), (high, low) in self.thresholds.items():
            series = [quotes[ticker] for quotes in self.prices]
            for side, threshold in (("HIGH", high), ("LOW", low)):
                fired = crossings(series, threshold, side)
                alerts.update((user, ticker, side, n) for n in range(1, len(fired) + 1))
        return alerts


@pytest.fixture
def storm_database() -> str:
    """A fresh MariaDB database of this pytest-xdist worker for the storm test (dropped and
    created again; the run migrates it)."""
    return worker_database_url(mariadb_url(), "crash", fresh=True)


def test_sigkills_during_an_alert_storm_lose_no_email(
    tmp_path: Path, runs: Runs, storm_database: str
) -> None:
    """Killed with SIGKILL three times while 120 subscriptions fire every cycle, the run
    mails every crossing after its restarts, none unexpected, at most one resend per kill."""
    rng = random.Random(SEED)
    storm = Storm.generate(rng)
    expected = storm.expected()
    assert len(expected) == STORM_USERS * len(FLAT) * SWINGS

    with SmtpServer() as smtp, ExitStack() as clients:
        address = f"127.0.0.1:{free_port()}"
        env = clean_environ() | {
            "STOCKALERT_DB_URL": storm_database,
            "STOCKALERT_PRICE_SOURCE": f"replay:{storm.write(tmp_path / 'prices.csv')}",
            "STOCKALERT_COLLECT_INTERVAL": STORM_INTERVAL_S,
            "STOCKALERT_GRPC_ADDR": address,
            "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
            "STOCKALERT_OUTBOX_DIR": str(tmp_path / "outbox"),
            **smtp_environ(smtp, pause_s=0.5),
            "XDG_CONFIG_HOME": str(tmp_path / "server-config"),
        }
        logs: list[Path] = []

        def start() -> subprocess.Popen[bytes]:
            logs.append(tmp_path / f"run-{len(logs) + 1}.log")
            process = runs.start(env, tmp_path, logs[-1])
            wait_until_serving(address, process, timeout=30)
            return process

        process = start()
        began = time.monotonic()

        # Set up: accounts first (the replay stands still while nothing is watched), then
        # the subscriptions, which start the replay; the flat prefix must outlast them.
        client = {user: clients.enter_context(StockAlertClient(address)) for user in storm.users}
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda u: client[u].register(u, PASSWORD), storm.users))
            list(pool.map(lambda u: client[u].login(u, PASSWORD), storm.users))
            list(
                pool.map(
                    lambda key: client[key[0]].set_subscription(
                        key[1],
                        high_value=storm.thresholds[key][0],
                        low_value=storm.thresholds[key][1],
                    ),
                    storm.thresholds,
                )
            )
        anyone = client[storm.users[0]]
        first_swing = storm.timestamp(FLAT_CYCLES)
        for ticker in FLAT:
            at = anyone.latest(ticker).quoted_at.ToDatetime(tzinfo=UTC)
            assert at < first_swing, "the set-up outlasted the flat prefix: raise FLAT_CYCLES"
        owner = {
            sub.subscription_id: (user, sub.ticker)
            for user in storm.users
            for sub in client[user].subscriptions().subscriptions
        }
        assert len(owner) == len(storm.thresholds)
        setup_s = time.monotonic() - began
        deadline = time.monotonic() + STORM_BUDGET_S

        def left() -> float:
            return max(deadline - time.monotonic(), 0.0)

        def messages_at_least(count: int) -> Callable[[], bool]:
            return lambda: len(smtp.messages) >= count

        # Kill the run while it mails, at growing fractions (one in each of KILLS equal slices
        # of 10 %..70 % of the expected e-mails), and start it again.
        slice_ = 0.6 / KILLS
        kills: list[int] = []
        for n in range(KILLS):
            target = int(rng.uniform(0.1 + n * slice_, 0.1 + (n + 1) * slice_) * len(expected))
            wait_for(
                messages_at_least(target), left(), f"{target} e-mails before SIGKILL {n + 1}", 0.01
            )
            kill(process)
            kills.append(len(smtp.messages))
            process = start()

        # Settle: the replay is over (the last quotes stored), a whole cycle has run since,
        # nothing is PENDING and the count no longer changes.
        last_at = storm.timestamp(len(storm.prices) - 1)
        wait_for(
            lambda: all(anyone.latest(t).quoted_at.ToDatetime(tzinfo=UTC) == last_at for t in FLAT),
            left(),
            "the last quotes of the replay",
        )
        one_more_cycle(logs[-1], left())
        counts = [-1]

        def settled() -> bool:
            pending = sum(
                n.status == pb.DELIVERY_STATUS_PENDING
                for user in storm.users
                for n in client[user].notifications(limit=1000).notifications
            )
            counts.append(len(smtp.messages))
            return pending == 0 and counts[-1] == counts[-2]

        wait_for(settled, left(), "no PENDING notification and no new e-mail", poll_s=0.5)
        stop(process)
        total_s = time.monotonic() - began

    received = smtp.messages
    by_id = Counter(r.message["Message-ID"] for r in received)
    alerts: set[Alert] = set()
    for r in received:
        subscription_id, side, episode = notification_id_of(r.message["Message-ID"]).split(":")
        user, ticker = owner.get(subscription_id, ("?", subscription_id))
        to = str(r.message["To"])
        alerts.add(
            (to if to == user else f"{to} (subscription of {user})", ticker, side, int(episode))
        )
    missing = sorted(expected - alerts)
    unexpected = sorted(alerts - expected)
    duplicates = sum(count - 1 for count in by_id.values())
    summary = (
        f"{len(received)} messages for {len(expected)} expected e-mails; SIGKILLs after "
        f"{kills} messages; set-up {setup_s:.1f} s, in all {total_s:.1f} s"
    )
    assert not missing, f"{len(missing)} e-mails lost ({summary}), e.g. {missing[:5]}"
    assert not unexpected, f"{len(unexpected)} unexpected e-mails ({summary}): {unexpected[:5]}"
    assert duplicates <= KILLS, f"{duplicates} e-mails sent twice ({summary})"

"""`make run-distributed` (scripts/run-distributed) as a developer runs it: the services of
scripts/dev-services, every role its own process under honcho (Procfile, two alert-system
instances), a user registered through the CLI gets the e-mail of a crossing of the replay
file, and Ctrl-C stops every process the run started, each role with exit 0.

The run gets a database, a topic prefix and gRPC ports of its own, so it runs beside the
other tests on the shared MariaDB and cluster (those of the active endpoints: scripts/dev-
services, or the compose stack), which it is given, so it starts no service itself. Its
e-mails go to an SMTP server this test runs instead of Mailpit: Mailpit is built with Go,
which CI does not install for one test; the script's path is the same but for the addresses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockalert.adapters.kafka.admin import KafkaAdministrator
from stockalert.adapters.kafka.topics import Topics
from tests.integration.conftest import mariadb_url, worker_database_url
from tests.processes import clean_environ, free_port, ok, run_cli, wait_for
from tests.smtp_server import SmtpServer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "run-distributed"
ALICE = "alice@example.com"
PROCESSES = [
    "kafka-admin.1",
    "command-api.1",
    "query-api.1",
    "collector.1",
    "alert-system.1",
    "alert-system.2",
    "notifier.1",
    "cleaner.1",
]
READY_S = 240.0  # dev-services start, migration, topics, 8 processes starting on 2 busy cores
MAIL_S = 60.0
STOP_S = 90.0  # the roles' graceful stop; honcho SIGKILLs after 30 s


def processes_marked(marker: bytes) -> list[int]:
    """The live processes whose environment holds `marker` (a variable only this test's run
    and everything it started inherit)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def test_run_distributed_mails_a_crossing_and_ctrl_c_stops_every_role_with_exit_0(
    tmp_path: Path, kafka: str, smtp: SmtpServer
) -> None:
    """register + watch through the CLI → the crossing's e-mail at the SMTP server; SIGINT to
    the run's process group (a terminal's Ctrl-C) → every role exits 0, the script exits 0 and
    no process it started is left."""
    run_dir = tmp_path / "run"
    prefix = f"test-{uuid.uuid4().hex[:10]}."
    commands, queries = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = clean_environ() | {
        "RUN_DISTRIBUTED_DIR": str(run_dir),
        "RUN_DISTRIBUTED_DB_URL": worker_database_url(mariadb_url(), "distributed", fresh=True),
        "RUN_DISTRIBUTED_KAFKA": kafka,
        "RUN_DISTRIBUTED_TOPIC_PREFIX": prefix,
        "RUN_DISTRIBUTED_GRPC_PORT": commands.rsplit(":", 1)[1],
        "RUN_DISTRIBUTED_QUERY_PORT": queries.rsplit(":", 1)[1],
        "RUN_DISTRIBUTED_SMTP": f"127.0.0.1:{smtp.port}",
    }
    marker = f"RUN_DISTRIBUTED_DIR={run_dir}".encode()
    output = tmp_path / "run-distributed.out"
    with output.open("wb") as sink:
        run = subprocess.Popen(
            [str(SCRIPT)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as in a terminal
        )
    try:
        wait_for(
            lambda: "== run-distributed: ready" in output.read_text(errors="replace"),
            READY_S,
            "every role started",
            poll_s=0.5,
            logs=[output],
        )
        cli = clean_environ() | {
            "STOCKALERT_GRPC_ADDR": commands,
            "STOCKALERT_QUERY_ADDR": queries,
            "XDG_CONFIG_HOME": str(tmp_path / "cli"),
        }
        ok(run_cli(cli, "register", ALICE, "--password-stdin", stdin="password123\n"))
        ok(run_cli(cli, "watch", "AAPL", "--high", "190"))

        def crossing_mailed() -> bool:
            return any(ALICE in m.rcpt_tos for m in smtp.messages)

        wait_for(crossing_mailed, MAIL_S, "the e-mail of AAPL above 190", logs=[output])
        (first, *_) = [m for m in smtp.messages if ALICE in m.rcpt_tos]
        assert first.message["Subject"].startswith("AAPL HIGH: 190.55")

        os.killpg(run.pid, signal.SIGINT)
        assert run.wait(timeout=STOP_S) == 0, output.read_text(errors="replace")
        text = output.read_text(errors="replace")
        for name in PROCESSES:
            assert f"| {name} stopped (rc=0)" in text, name
        for role in {name.split(".")[0] for name in PROCESSES}:
            assert f"event=stopped role={role}" in text, role
        assert "every role stopped with exit 0 (8 processes)" in text
        assert "Traceback" not in text, text
        wait_for(lambda: not processes_marked(marker), 10, "no process of the run left")
    finally:
        for pid in processes_marked(marker):  # only what this run started, by PID
            os.kill(pid, signal.SIGKILL)
        if run.poll() is None:
            run.kill()
            run.wait()
        KafkaAdministrator(kafka).delete_topics([spec.name for spec in Topics(prefix).specs()])

"""Where the integration tests find their servers (a pytest plugin, loaded by tests/conftest.py).

By default (CI, `make test`): the processes of scripts/dev-services, whose addresses are the
variables of .state/services.env in the environment. Nothing here touches Docker then.

With `pytest --compose`: the backing services of compose/compose.yaml (the three Kafka brokers
and MySQL), started through pytest-docker's `docker_services` as the project
`stockalert-tests`, on ports of their own published on 127.0.0.1; the endpoints are those
published ports. Without a Docker engine, `--compose` is a usage error, not a skip. The
stack is shared by the pytest-xdist workers and taken down (`down -v`) by the last one,
unless `--compose-keep` leaves it for the next run.

Tests read an address with `setting(NAME)` and stop or start a broker with
`control("kill-broker" | "start-broker", N)`, whichever source is active.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".state"
COMPOSE_FILE = ROOT / "compose" / "compose.yaml"
ENV_EXAMPLE = ROOT / "compose" / ".env.example"
PROJECT = "stockalert-tests"
BACKING_SERVICES = ("kafka-1", "kafka-2", "kafka-3", "mysql")
KAFKA_EXTERNAL_PORT = 9094  # the brokers' EXTERNAL listener inside the containers
# Test-only values, like the fixed credentials of scripts/dev-services: the ports listen on
# 127.0.0.1 alone, and are not those of a `docker compose up` stack, which may run meanwhile.
TEST_SETTINGS = {
    "MYSQL_ROOT_PASSWORD": "stockalert-tests-root",
    "MYSQL_PASSWORD": "stockalert-tests",
    "STOCKALERT_AUTH_SECRET": "stockalert-tests-token-signing-key-0123456789",
    "MYSQL_HOST_PORT": "43316",
    "KAFKA_1_HOST_PORT": "49192",
    "KAFKA_2_HOST_PORT": "49193",
    "KAFKA_3_HOST_PORT": "49194",
}
STARTUP_TIMEOUT_S = 300


@attrs.frozen
class ComposeStack:
    """The running test stack: its endpoints, and the compose command that reaches it."""

    settings: dict[str, str]
    command: tuple[str, ...]

    def compose(self, *args: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """`docker compose ARGS` on the test stack."""
        subprocess.run([*self.command, *args], check=True, timeout=timeout)


_stack: ComposeStack | None = None  # set while --compose is active


def setting(name: str) -> str:
    """An endpoint variable (STOCKALERT_DB_URL, STOCKALERT_TEST_DB_URL,
    STOCKALERT_KAFKA_BOOTSTRAP): the compose stack's when active, else the environment's."""
    if _stack is not None:
        return _stack.settings.get(name, "")
    return os.environ.get(name, "")


def control(action: str, node: str) -> None:
    """kill-broker N (SIGKILL) or start-broker N (and wait until it serves again)."""
    if _stack is None:
        subprocess.run(
            [str(ROOT / "scripts" / "dev-services"), action, node], check=True, timeout=120
        )
    elif action == "kill-broker":
        _stack.compose("kill", "--signal", "SIGKILL", f"kafka-{node}")
    elif action == "start-broker":
        _stack.compose("up", "--detach", "--wait", "--no-deps", f"kafka-{node}")
    else:
        raise ValueError(f"unknown broker action {action!r}")


# ---- the pytest plugin --------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stockalert", "stockalert integration servers")
    group.addoption(
        "--compose",
        action="store_true",
        help="run the integration tests against compose/compose.yaml (needs a Docker engine) "
        "instead of scripts/dev-services",
    )
    group.addoption(
        "--compose-keep",
        action="store_true",
        help="with --compose: leave the test stack running for the next run",
    )


def pytest_configure(config: pytest.Config) -> None:
    """`--compose` without a Docker engine stops the run at once (the xdist controller asks)."""
    if not config.getoption("compose") or hasattr(config, "workerinput"):
        return
    problem = docker_problem()
    if problem:
        raise pytest.UsageError(
            f"--compose needs a Docker engine with Compose v2: {problem}. Without Docker, "
            "run the tests against scripts/dev-services (the default)."
        )


def docker_problem() -> str:
    """Why `docker compose` cannot run containers here, or '' when it can."""
    if shutil.which("docker") is None:
        return "no `docker` command on PATH"
    for args, what in (
        (["docker", "info", "--format", "{{.ServerVersion}}"], "the Docker engine"),
        (["docker", "compose", "version"], "`docker compose` (the Compose v2 plugin)"),
    ):
        try:
            result = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"{what} does not answer ({err})"
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            return f"{what} does not answer ({last})"
    return ""


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    """pytest-docker: the stack is the one users run."""
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    """pytest-docker: one name for every xdist worker, so that they share one stack."""
    return PROJECT


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    """pytest-docker: .env.example with the test values on top (a later --env-file wins)."""
    STATE.mkdir(exist_ok=True)
    overrides = STATE / "compose-tests.env"
    overrides.write_text("".join(f"{k}={v}\n" for k, v in TEST_SETTINGS.items()))
    return shlex.join(
        ["docker", "compose", "--env-file", str(ENV_EXAMPLE), "--env-file", str(overrides)]
    )


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    """pytest-docker: the backing services only, healthy (the roles run as test processes)."""
    return [f"up --detach --wait --wait-timeout {STARTUP_TIMEOUT_S} {' '.join(BACKING_SERVICES)}"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    """pytest-docker: nothing; the last worker takes the stack down (see `service_endpoints`)."""
    return []


@pytest.fixture(scope="session")
def service_endpoints(request: pytest.FixtureRequest) -> Iterator[None]:
    """Makes `setting` answer from the compose stack under --compose; else does nothing."""
    global _stack  # noqa: PLW0603 - tests call setting() as a plain function
    if not request.config.getoption("compose"):
        yield
        return
    command = (
        *shlex.split(request.getfixturevalue("docker_compose_command")),
        *("--file", str(COMPOSE_FILE), "--project-name", PROJECT),
    )
    with _registered_user(command, keep=request.config.getoption("compose_keep")):
        with _locked():  # one `up` at a time: concurrent ones race creating the containers
            services = request.getfixturevalue("docker_services")
        mysql = services.port_for("mysql", 3306)
        kafka = [services.port_for(f"kafka-{n}", KAFKA_EXTERNAL_PORT) for n in (1, 2, 3)]
        services.wait_until_responsive(
            check=lambda: _test_database_ready(mysql), timeout=120, pause=1
        )
        root = f"root:{TEST_SETTINGS['MYSQL_ROOT_PASSWORD']}@127.0.0.1:{mysql}"
        user = f"stockalert:{TEST_SETTINGS['MYSQL_PASSWORD']}@127.0.0.1:{mysql}"
        _stack = ComposeStack(
            settings={
                "STOCKALERT_DB_URL": f"mysql+pymysql://{user}/stockalert",
                # root: each xdist worker creates databases of its own (stockalert_test_gwN)
                "STOCKALERT_TEST_DB_URL": f"mysql+pymysql://{root}/stockalert_test",
                "STOCKALERT_KAFKA_BOOTSTRAP": ",".join(f"127.0.0.1:{port}" for port in kafka),
            },
            command=command,
        )
        try:
            yield
        finally:
            _stack = None


def _test_database_ready(port: int) -> bool:
    """The base database of STOCKALERT_TEST_DB_URL exists (created here: MySQL's image makes
    only `stockalert`)."""
    # Only under --compose: the plugin itself stays light for every pytest process.
    from sqlalchemy import create_engine, text  # noqa: PLC0415
    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415

    password = TEST_SETTINGS["MYSQL_ROOT_PASSWORD"]
    engine = create_engine(
        f"mysql+pymysql://root:{password}@127.0.0.1:{port}",
        connect_args={"connect_timeout": 5},
    )
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "CREATE DATABASE IF NOT EXISTS stockalert_test"
                    " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
            )
    except DBAPIError:
        return False
    finally:
        engine.dispose()
    return True


@contextmanager
def _locked() -> Iterator[None]:
    STATE.mkdir(exist_ok=True)
    with (STATE / "compose-tests.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _registered_user(command: tuple[str, ...], keep: bool) -> Iterator[None]:
    """This process uses the stack meanwhile; the last user to leave takes it down. Users
    are PIDs, so that a run that crashed does not keep the stack up forever."""
    users = STATE / "compose-tests.users"

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True

    def update(joining: bool) -> list[int]:
        known = json.loads(users.read_text()) if users.exists() else []
        now = [pid for pid in known if pid != os.getpid() and alive(pid)]
        if joining:
            now.append(os.getpid())
        users.write_text(json.dumps(now))
        return now

    with _locked():
        update(joining=True)
    try:
        yield
    finally:
        with _locked():
            if not update(joining=False) and not keep:
                subprocess.run(
                    [*command, "down", "--volumes"], check=False, timeout=STARTUP_TIMEOUT_S
                )

"""The composition root, the role registry, the CLI skeleton and the layering rules."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from stockalert import containers
from stockalert.adapters.mail.smtp import SmtpSettings
from stockalert.adapters.memory.fakes import MemoryMailer
from stockalert.containers import retry_policy
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import RetryPolicy
from stockalert.entrypoints import cli, settings
from stockalert.entrypoints.roles import ROLES
from stockalert.entrypoints.settings import ConfigError, embedded_config
from tests.wiring import build_container

EXAMPLES = Path(__file__).parents[2] / "examples"

DOMAIN = Path(__file__).parents[2] / "src" / "stockalert" / "domain"
ALLOWED_THIRD_PARTY = {"attrs", "sortedcontainers"}


def embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    smtp_only = {
        "STOCKALERT_SMTP_PORT",
        "STOCKALERT_SMTP_STARTTLS",
        "STOCKALERT_SMTP_FROM",
        "STOCKALERT_SMTP_PAUSE_S",
        "STOCKALERT_SMTP_BUILD_PROCESSES",
    }
    env = {"STOCKALERT_SMTP_HOST": "127.0.0.1"} if smtp_only & set(extra) else {}
    env |= {
        "STOCKALERT_PRICE_SOURCE": f"replay:{EXAMPLES / 'prices.csv'}",
        "STOCKALERT_STATE_DIR": str(tmp_path / "state"),
        "STOCKALERT_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    env.update(extra)
    return env


SECRET = "a-token-signing-key-of-at-least-32-bytes"
# Each role's container and the settings function that fills it from the environment.
ROLE_WIRING: dict[str, tuple[Any, Callable[[Mapping[str, str]], dict[str, Any]]]] = {
    "command-api": (containers.CommandApi, settings.command_api_config),
    "query-api": (containers.QueryApi, settings.query_api_config),
    "collector": (containers.Collector, settings.collector_config),
    "alert-system": (containers.AlertSystem, settings.alert_system_config),
    "notifier": (containers.Notifier, settings.notifier_config),
    "cleaner": (containers.Cleaner, settings.cleaner_config),
    "kafka-admin": (containers.KafkaAdmin, settings.kafka_admin_config),
    "embedded": (containers.Embedded, settings.embedded_config),
}
# No broker listens there: building a container connects to nothing.
KAFKA = {"STOCKALERT_KAFKA_BOOTSTRAP": "127.0.0.1:1"}


@pytest.mark.parametrize(
    ("role", "kafka"),
    [
        pytest.param(role, kafka, id=f"{role}-{'kafka' if kafka else 'inprocess'}")
        for role in sorted(ROLE_WIRING)
        for kafka in (False, True)
        # kafka-admin's and alert-system's settings refuse to go without
        if kafka or role not in ("kafka-admin", "alert-system")
    ],
)
def test_every_role_container_is_complete_from_its_own_settings(
    role: str, kafka: bool, tmp_path: Path
) -> None:
    """Each role's settings fill its container: check_dependencies() finds nothing undefined
    and the bus (the handler sets of the role) is built without any other role's option,
    with and without Kafka."""
    role_type, role_settings = ROLE_WIRING[role]
    env = embedded_env(tmp_path, STOCKALERT_AUTH_SECRET=SECRET, STOCKALERT_DB_URL="memory://")
    container = build_container(role_type, role_settings(env | (KAFKA if kafka else {})))
    assert isinstance(container.bus(), MessageBus)
    container.shutdown_resources()


def test_the_registry_is_the_cli_serve_choices_and_every_role_has_its_module(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`stockalert serve ROLE` offers exactly the registered roles, each a module with
    its container, settings and plan; `serve ROLE --help` says what it does and what it reads."""
    assert set(ROLES) == set(ROLE_WIRING) - {"embedded"}
    with pytest.raises(SystemExit) as bad:
        cli.main(["serve", "no-such-role"])
    assert bad.value.code == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert all(name in error for name in ROLES)
    for role in ROLES.values():
        module = importlib.import_module(role.module)
        assert role.name == module.ROLE
        assert callable(module.settings)
        assert callable(module.plan)
        with pytest.raises(SystemExit) as shown:
            cli.main(["serve", role.name, "--help"])
        assert shown.value.code == 0
        text = capsys.readouterr().out
        assert role.summary.split(":")[0] in " ".join(text.split())
        assert all(variable in text for variable in role.variables)


def test_a_role_builds_only_its_own_parts(tmp_path: Path) -> None:
    """The query API opens no write engine (only the read one) and hashes nothing; the
    collector has no accounts, no mailer and no alert engine."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    env = embedded_env(tmp_path, STOCKALERT_AUTH_SECRET=SECRET, STOCKALERT_DB_URL=url)
    query_api = build_container(containers.QueryApi, settings.query_api_config(env))
    query_api.bus()
    assert query_api.core.read_db_engine.initialized
    assert not query_api.core.db_engine.initialized
    assert not hasattr(query_api, "accounts")
    query_api.shutdown_resources()
    assert not {"accounts", "delivery", "alerting"} & set(vars(containers.Collector))
    assert not {"accounts", "collection", "alerting"} & set(vars(containers.Notifier))
    assert not {"accounts", "collection", "delivery"} & set(vars(containers.AlertSystem))


def test_the_query_api_process_loads_neither_yfinance_nor_smtp() -> None:
    """Modules load with the role that needs them: a query-api process imports no yfinance,
    pandas or smtplib (checked in a fresh interpreter)."""
    code = (
        "import sys\n"
        "from stockalert.entrypoints import query_api\n"
        "from stockalert.containers import QueryApi\n"
        "from tests.wiring import build_container\n"
        "build_container(QueryApi).bus()\n"
        "print(sorted(m for m in ('yfinance', 'pandas', 'smtplib') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        cwd=Path(__file__).parents[2],  # where `tests` is importable
    ).stdout
    assert out.strip() == "[]"


def test_container_providers_can_be_overridden_with_fakes() -> None:
    """Tests swap one adapter without touching the wiring."""
    container = build_container()
    fake = MemoryMailer()
    with container.delivery.mailer.override(fake):
        assert container.delivery.mailer() is fake


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("STOCKALERT_DB_URL", "oracle://nowhere", "STOCKALERT_DB_URL='oracle://nowhere'"),
        ("STOCKALERT_PRICE_SOURCE", "", "STOCKALERT_PRICE_SOURCE='' must be yfinance, "),
        ("STOCKALERT_PRICE_SOURCE", "bloomberg", "yfinance-chart or replay:PATH"),
        ("STOCKALERT_PRICE_SOURCE", "replay:/no/such.csv", "no such file"),
        ("STOCKALERT_STALE_AFTER_S", "-5", "STOCKALERT_STALE_AFTER_S='-5' must be at least"),
        ("STOCKALERT_BREAKER_FAILURES", "0", "STOCKALERT_BREAKER_FAILURES='0'"),
        ("STOCKALERT_GRPC_ADDR", "localhost", "STOCKALERT_GRPC_ADDR='localhost' must be HOST:PORT"),
        ("STOCKALERT_GRPC_ADDR", "h:99999", "must be HOST:PORT"),
        ("STOCKALERT_COLLECT_INTERVAL", "soon", "STOCKALERT_COLLECT_INTERVAL='soon'"),
        ("STOCKALERT_COLLECT_INTERVAL", "0", "at least 0.05"),
        ("STOCKALERT_AUTH_SECRET", "short", "STOCKALERT_AUTH_SECRET must be at least 32"),
        ("STOCKALERT_SMTP_PORT", "smtp", "STOCKALERT_SMTP_PORT='smtp' must be a port"),
        ("STOCKALERT_SMTP_STARTTLS", "maybe", "STOCKALERT_SMTP_STARTTLS='maybe' must be true"),
        ("STOCKALERT_SMTP_FROM", "nobody", "STOCKALERT_SMTP_FROM='nobody' must be one address"),
        ("STOCKALERT_SMTP_PAUSE_S", "-1", "STOCKALERT_SMTP_PAUSE_S='-1' must be at least 0"),
        ("STOCKALERT_SMTP_BUILD_PROCESSES", "two", "STOCKALERT_SMTP_BUILD_PROCESSES='two'"),
        ("STOCKALERT_MAIL_RETRY_BASE_S", "soon", "STOCKALERT_MAIL_RETRY_BASE_S='soon'"),
        ("STOCKALERT_MAIL_RETRY_MAX_S", "5", "STOCKALERT_MAIL_RETRY_MAX_S=5 must be at least"),
    ],
)
def test_bad_environment_is_a_configuration_error_naming_the_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    """A wrong STOCKALERT_* value stops start-up with a message that names it."""
    with pytest.raises(ConfigError) as excinfo:
        embedded_config(embedded_env(tmp_path, **{variable: value}))
    assert message in str(excinfo.value)


def test_a_smtp_login_without_tls_is_refused_unless_the_server_is_local(tmp_path: Path) -> None:
    """STOCKALERT_SMTP_USER with STARTTLS and TLS off would send the password in clear."""
    plain = {"STOCKALERT_SMTP_STARTTLS": "false", "STOCKALERT_SMTP_USER": "alerts"}
    with pytest.raises(ConfigError, match="STOCKALERT_SMTP_USER needs STOCKALERT_SMTP_STARTTLS"):
        embedded_config(embedded_env(tmp_path, STOCKALERT_SMTP_HOST="mail.example.com", **plain))
    local = embedded_config(embedded_env(tmp_path, STOCKALERT_SMTP_HOST="localhost", **plain))
    assert local["mail"]["smtp"]["user"] == "alerts"


def test_mail_settings_reach_the_mailer_and_the_retry_policy(tmp_path: Path) -> None:
    """STOCKALERT_SMTP_* and STOCKALERT_MAIL_RETRY_* end up in the objects that use them."""
    config = embedded_config(
        embedded_env(
            tmp_path,
            STOCKALERT_SMTP_PAUSE_S="5",
            STOCKALERT_SMTP_BUILD_PROCESSES="0",
            STOCKALERT_MAIL_RETRY_BASE_S="2",
            STOCKALERT_MAIL_RETRY_MAX_S="60",
        )
    )
    assert config["mail"]["smtp"]["pause_s"] == 5.0
    assert config["mail"]["smtp"]["build_processes"] == 0
    assert retry_policy(config["mail_retry"]) == RetryPolicy(base_s=2.0, max_s=60.0)
    assert retry_policy(None) == RetryPolicy()
    settings = SmtpSettings(**config["mail"]["smtp"])
    assert (settings.pause_s, settings.build_processes) == (5.0, 0)


def test_embedded_run_generates_and_keeps_a_private_auth_secret(tmp_path: Path) -> None:
    """Without STOCKALERT_AUTH_SECRET the state folder gets one (0600), reused next time."""
    first = embedded_config(embedded_env(tmp_path))["auth_secret"]
    second = embedded_config(embedded_env(tmp_path))["auth_secret"]
    secret_file = tmp_path / "state" / "auth-secret"
    assert first == second
    assert len(first) >= 32
    assert secret_file.stat().st_mode & 0o777 == 0o600


def test_cli_check_config_exits_0_on_a_valid_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`stockalert check-config` builds everything and says so."""
    for name, value in embedded_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STOCKALERT_DB_URL", raising=False)
    assert cli.main(["check-config"]) == cli.EXIT_OK
    assert "configuration ok" in capsys.readouterr().out


def test_cli_check_config_exits_78_on_a_bad_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A configuration error is reported on stderr with EX_CONFIG."""
    for name, value in embedded_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STOCKALERT_DB_URL", "oracle://nowhere")
    assert cli.main(["check-config"]) == cli.EXIT_CONFIG
    assert "STOCKALERT_DB_URL" in capsys.readouterr().err


def test_cli_without_a_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Bare `stockalert` is a usage error."""
    assert cli.main([]) == cli.EXIT_USAGE
    assert "usage: stockalert" in capsys.readouterr().out


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted(DOMAIN.rglob("*.py")), ids=lambda p: p.name)
def test_domain_imports_only_the_domain_and_pure_libraries(path: Path) -> None:
    """The hexagon's core never imports adapters, entrypoints, the DI library or I/O."""
    for module in _imports(path):
        top = module.split(".")[0]
        if top == "stockalert":
            assert module.startswith("stockalert.domain"), f"{path.name} imports {module}"
        else:
            is_stdlib = top in __import__("sys").stdlib_module_names
            assert is_stdlib or top in ALLOWED_THIRD_PARTY, f"{path.name} imports {module}"
            assert top not in {"socket", "time", "random", "uuid", "smtplib", "urllib"}, module

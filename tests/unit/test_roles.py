"""`stockalert serve ROLE`: a missing or bad variable stops the role before it starts, with
exit 78 and a message naming the variable."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from stockalert.entrypoints import cli, settings
from stockalert.entrypoints.roles import ROLES, VARIABLES

SECRET = "a-token-signing-key-of-at-least-32-bytes"
# For each role: a variable it needs, the bad or missing value, and what the message says.
BROKEN = [
    ("command-api", "STOCKALERT_AUTH_SECRET", None, "STOCKALERT_AUTH_SECRET is required"),
    ("command-api", "STOCKALERT_GRPC_ADDR", "nowhere", "STOCKALERT_GRPC_ADDR='nowhere'"),
    ("query-api", "STOCKALERT_AUTH_SECRET", None, "STOCKALERT_AUTH_SECRET is required"),
    ("query-api", "STOCKALERT_QUERY_ADDR", "h:99999", "STOCKALERT_QUERY_ADDR='h:99999'"),
    ("query-api", "STOCKALERT_GRPC_WORKERS", "0", "STOCKALERT_GRPC_WORKERS='0' must be a whole"),
    ("cleaner", "STOCKALERT_LOG_FORMAT", "xml", "STOCKALERT_LOG_FORMAT='xml' must be text or json"),
    ("command-api", "STOCKALERT_GRPC_WORKERS", "1000", "STOCKALERT_GRPC_WORKERS=1000 must be at"),
    ("collector", "STOCKALERT_PRICE_SOURCE", None, "STOCKALERT_PRICE_SOURCE='' must be"),
    ("collector", "STOCKALERT_COLLECT_INTERVAL", "soon", "STOCKALERT_COLLECT_INTERVAL='soon'"),
    ("notifier", "STOCKALERT_SMTP_PORT", "smtp", "STOCKALERT_SMTP_PORT='smtp' must be a port"),
    ("notifier", "STOCKALERT_DELIVERY_INTERVAL", "0", "STOCKALERT_DELIVERY_INTERVAL='0'"),
    ("cleaner", "STOCKALERT_KEEP_QUOTES", "none", "STOCKALERT_KEEP_QUOTES='none'"),
    ("kafka-admin", "STOCKALERT_KAFKA_BOOTSTRAP", None, "STOCKALERT_KAFKA_BOOTSTRAP is required"),
    ("kafka-admin", "STOCKALERT_KAFKA_MIN_INSYNC", "4", "must not exceed STOCKALERT_KAFKA_REPL"),
    ("collector", "STOCKALERT_KAFKA_BOOTSTRAP", "kafka", "STOCKALERT_KAFKA_BOOTSTRAP='kafka'"),
    ("command-api", "STOCKALERT_KAFKA_COMPRESSION", "rar", "STOCKALERT_KAFKA_COMPRESSION='rar'"),
    *[
        (role, "STOCKALERT_DB_URL", "oracle://x", "STOCKALERT_DB_URL='oracle://x'")
        for role in ROLES
        if role != "kafka-admin"  # it has no database
    ],
]


@pytest.mark.parametrize(("role", "variable", "value", "message"), BROKEN)
def test_a_role_with_a_missing_or_bad_variable_exits_78_naming_it(
    role: str,
    variable: str,
    value: str | None,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing starts (no database, no port): the configuration is read first."""
    for name in ("STOCKALERT_DB_URL", "STOCKALERT_SMTP_HOST", "STOCKALERT_GRPC_ADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STOCKALERT_DB_URL", "memory://")
    monkeypatch.setenv("STOCKALERT_AUTH_SECRET", SECRET)
    monkeypatch.setenv("STOCKALERT_PRICE_SOURCE", "yfinance")
    monkeypatch.setenv("STOCKALERT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("STOCKALERT_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    if value is None:
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, value)

    assert cli.main(["serve", role]) == cli.EXIT_CONFIG

    error = capsys.readouterr().err
    assert "configuration error" in error
    assert message in error


def test_a_metrics_port_in_use_stops_the_role_with_exit_78_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two processes on one STOCKALERT_METRICS_PORT: the second says so and stops."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("STOCKALERT_DB_URL", "memory://")
        monkeypatch.setenv("STOCKALERT_AUTH_SECRET", SECRET)
        monkeypatch.setenv("STOCKALERT_QUERY_ADDR", "127.0.0.1:0")
        monkeypatch.setenv("STOCKALERT_METRICS_PORT", f"127.0.0.1:{port}")

        assert cli.main(["serve", "query-api"]) == cli.EXIT_CONFIG

    error = capsys.readouterr().err
    assert f"STOCKALERT_METRICS_PORT: cannot listen on 127.0.0.1:{port}" in error


def test_every_variable_the_settings_read_is_explained_for_serve_help() -> None:
    """No variable is read that `serve ROLE --help` could not explain."""
    source = Path(settings.__file__).read_text()
    # STOCKALERT_X_* in prose names a family, not a variable
    read = {n for n in re.findall(r"STOCKALERT_\w+", source) if not n.endswith("_")}
    assert read - set(VARIABLES) == set()
    assert {v for role in ROLES.values() for v in role.variables} <= set(VARIABLES)

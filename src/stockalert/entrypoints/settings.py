"""Configuration from STOCKALERT_* environment variables, validated up front.

Every error names the variable; the result is the plain dict the container's
`Configuration(strict=True)` is filled from.
"""

from __future__ import annotations

import math
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stockalert.adapters.files import private_dir
from stockalert.adapters.mail import DEFAULT_SENDER
from stockalert.adapters.tokens import MIN_SECRET_BYTES

DEFAULT_GRPC_ADDR = "127.0.0.1:50051"
DEFAULT_QUERY_ADDR = "127.0.0.1:50052"
DEFAULT_COLLECT_INTERVAL_S = 180.0
DEFAULT_DB_URL = "sqlite:///stockalert.db"
DEFAULT_QUOTE_RETENTION_S = 7 * 24 * 3600.0
DEFAULT_KEEP_QUOTES = 20
DEFAULT_REQUEST_TTL_S = 24 * 3600.0
DEFAULT_CLEAN_INTERVAL_S = 3600.0
DEFAULT_DELIVERY_INTERVAL_S = 5.0
DEFAULT_STATE_DIR = ".stockalert"
DEFAULT_SUBSCRIPTIONS_PER_USER = 100
DEFAULT_MAX_TICKERS = 5_000  # each one is fetched every collection cycle
DEFAULT_REQUEST_BYTES = 64 * 1024  # a registration with 100 subscriptions is about 4 KB
DEFAULT_GRPC_WORKERS = 8  # threads serving calls (bench/api.py: fewer contend less for the GIL)


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the variable."""


def _address(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, "").strip() or default
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name}={value!r} must be HOST:PORT (port 0-65535)")
    return value


def _seconds(environ: Mapping[str, str], name: str, default: float, minimum: float = 0.05) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum:g} seconds")
    return value


def _count(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ConfigError(f"{name}={raw!r} must be a whole number >= {minimum}")
    return int(raw)


def _db_url(environ: Mapping[str, str], name: str, default: str) -> str:
    url = environ.get(name, "").strip() or default
    if url == "memory://":
        return url
    # SQLAlchemy loads only when a database is configured, not for every CLI command.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise ConfigError(f"{name}={url!r} is not a database URL") from None
    if backend not in ("sqlite", "mysql", "mariadb"):
        raise ConfigError(
            f"{name}={url!r}: use sqlite:///PATH, mysql+pymysql://USER:PASS@HOST:PORT/DB "
            "or memory://"
        )
    if backend == "sqlite" and make_url(url).database in (None, "", ":memory:"):
        raise ConfigError(f"{name}={url!r}: an in-memory SQLite database cannot be shared")
    return url


def _grpc_workers(environ: Mapping[str, str]) -> int:
    workers = _count(environ, "STOCKALERT_GRPC_WORKERS", DEFAULT_GRPC_WORKERS)
    if workers > 256:
        raise ConfigError(f"STOCKALERT_GRPC_WORKERS={workers} must be at most 256")
    return workers


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} must be true or false")


def mail_config(environ: Mapping[str, str], outbox: str) -> dict[str, Any]:
    """SMTP when STOCKALERT_SMTP_HOST is set, else .eml files in the outbox folder."""
    host = environ.get("STOCKALERT_SMTP_HOST", "").strip()
    if not host:
        return {"kind": "outbox", "outbox_dir": outbox}
    implicit = _flag(environ, "STOCKALERT_SMTP_TLS", default=False)
    starttls = _flag(environ, "STOCKALERT_SMTP_STARTTLS", default=not implicit)
    if implicit and starttls:
        raise ConfigError("STOCKALERT_SMTP_TLS and STOCKALERT_SMTP_STARTTLS exclude each other")
    security = "tls" if implicit else ("starttls" if starttls else "none")
    raw_port = environ.get("STOCKALERT_SMTP_PORT", "").strip()
    port = {"tls": 465, "starttls": 587, "none": 25}[security]
    if raw_port:
        if not raw_port.isdigit() or not 1 <= int(raw_port) <= 65535:
            raise ConfigError(f"STOCKALERT_SMTP_PORT={raw_port!r} must be a port (1-65535)")
        port = int(raw_port)
    user = environ.get("STOCKALERT_SMTP_USER", "").strip() or None
    # Only here, when mail goes over SMTP, is the adapter loaded (it is not light).
    from stockalert.adapters.mail.smtp import password_in_clear

    if password_in_clear(host, security, user):
        raise ConfigError(
            "STOCKALERT_SMTP_USER needs STOCKALERT_SMTP_STARTTLS or STOCKALERT_SMTP_TLS: "
            f"the password would cross the network to {host} in clear"
        )
    sender = environ.get("STOCKALERT_SMTP_FROM", "").strip() or DEFAULT_SENDER
    if any(c in sender for c in "\r\n") or "@" not in sender:
        raise ConfigError(f"STOCKALERT_SMTP_FROM={sender!r} must be one address, e.g. a@b.org")
    return {
        "kind": "smtp",
        "outbox_dir": outbox,
        "smtp": {
            "host": host,
            "port": port,
            "user": user,
            "password": environ.get("STOCKALERT_SMTP_PASSWORD") or None,
            "sender": sender,
            "security": security,
            "timeout_s": _seconds(environ, "STOCKALERT_SMTP_TIMEOUT_S", 10.0, minimum=0.1),
            "pause_s": _seconds(environ, "STOCKALERT_SMTP_PAUSE_S", 30.0, minimum=0.0),
            "build_processes": _count(environ, "STOCKALERT_SMTP_BUILD_PROCESSES", 1, minimum=0),
            "connections": _count(environ, "STOCKALERT_SMTP_CONNECTIONS", 1, minimum=1),
        },
    }


def mail_retry_config(environ: Mapping[str, str]) -> dict[str, float]:
    """Backoff of PENDING notifications: STOCKALERT_MAIL_RETRY_BASE_S doubling per attempt
    (with jitter) up to STOCKALERT_MAIL_RETRY_MAX_S."""
    base = _seconds(environ, "STOCKALERT_MAIL_RETRY_BASE_S", 30.0, minimum=0.0)
    cap = _seconds(environ, "STOCKALERT_MAIL_RETRY_MAX_S", 900.0, minimum=0.0)
    if cap < base:
        raise ConfigError(
            f"STOCKALERT_MAIL_RETRY_MAX_S={cap:g} must be at least "
            f"STOCKALERT_MAIL_RETRY_BASE_S={base:g}"
        )
    return {"base_s": base, "max_s": cap}


def storage_config(environ: Mapping[str, str]) -> dict[str, str]:
    """STOCKALERT_DB_URL and STOCKALERT_READ_DB_URL (reads may go to a replica)."""
    db_url = _db_url(environ, "STOCKALERT_DB_URL", DEFAULT_DB_URL)
    read_url = _db_url(environ, "STOCKALERT_READ_DB_URL", db_url)
    if (db_url == "memory://") != (read_url == "memory://"):
        raise ConfigError("STOCKALERT_READ_DB_URL must be memory:// exactly when the DB is")
    return {
        "storage": "memory" if db_url == "memory://" else "sql",
        "db_url": db_url,
        "read_db_url": read_url,
    }


def kafka_config(environ: Mapping[str, str], client_id: str) -> dict[str, Any]:
    """STOCKALERT_KAFKA_*: set STOCKALERT_KAFKA_BOOTSTRAP and the roles talk through Kafka
    (transport "kafka"); unset, events stay in the process (transport "inprocess")."""
    bootstrap = environ.get("STOCKALERT_KAFKA_BOOTSTRAP", "").strip()
    for server in filter(None, bootstrap.split(",")):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError(
                f"STOCKALERT_KAFKA_BOOTSTRAP={bootstrap!r} must be HOST:PORT[,HOST:PORT...]"
            )
    prefix = environ.get("STOCKALERT_KAFKA_TOPIC_PREFIX", "").strip()
    if prefix and not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", prefix):
        raise ConfigError(
            f"STOCKALERT_KAFKA_TOPIC_PREFIX={prefix!r} may hold only letters, digits, . _ -"
        )
    replication = _count(environ, "STOCKALERT_KAFKA_REPLICATION", 3)
    min_insync = _count(environ, "STOCKALERT_KAFKA_MIN_INSYNC", min(2, replication))
    if min_insync > replication:
        raise ConfigError(
            f"STOCKALERT_KAFKA_MIN_INSYNC={min_insync} must not exceed "
            f"STOCKALERT_KAFKA_REPLICATION={replication}"
        )
    compression = environ.get("STOCKALERT_KAFKA_COMPRESSION", "").strip() or "lz4"
    if compression not in ("none", "gzip", "snappy", "lz4", "zstd"):
        raise ConfigError(
            f"STOCKALERT_KAFKA_COMPRESSION={compression!r} must be none, gzip, snappy, lz4 or zstd"
        )
    return {
        "transport": "kafka" if bootstrap else "inprocess",
        "kafka": {
            "bootstrap": bootstrap,
            "client_id": client_id,
            "topics": {
                "prefix": prefix,
                "partitions": _count(environ, "STOCKALERT_KAFKA_PARTITIONS", 6),
                "replication": replication,
                "min_insync": min_insync,
            },
            "producer": {
                "bootstrap": bootstrap,
                "client_id": client_id,
                "linger_ms": _count(environ, "STOCKALERT_KAFKA_LINGER_MS", 5, minimum=0),
                "compression": compression,
            },
            "consumer": {
                "bootstrap": bootstrap,
                "client_id": client_id,
                "session_timeout_ms": _count(
                    environ, "STOCKALERT_KAFKA_SESSION_TIMEOUT_MS", 10_000, minimum=6_000
                ),
            },
            "admin_interval_s": _seconds(environ, "STOCKALERT_KAFKA_ADMIN_INTERVAL", 120.0),
            "relay_interval_s": _seconds(environ, "STOCKALERT_OUTBOX_INTERVAL", 1.0),
        },
    }


def core_config(environ: Mapping[str, str], role: str = "stockalert") -> dict[str, Any]:
    """What every role reads: the database URLs, the state folder and the transport."""
    return {
        **storage_config(environ),
        "state_dir": environ.get("STOCKALERT_STATE_DIR", "").strip() or DEFAULT_STATE_DIR,
        **kafka_config(environ, f"stockalert-{role}"),
        **telemetry_config(environ, role),
    }


def limits_config(environ: Mapping[str, str]) -> dict[str, float]:
    """Quotas: subscriptions per user (and per request), distinct tickers in the system,
    bytes of one gRPC request; the first wait of a throttled login."""
    return {
        "login_delay_s": _seconds(environ, "STOCKALERT_LOGIN_DELAY_S", 1.0),
        "subscriptions_per_user": _count(
            environ, "STOCKALERT_MAX_SUBSCRIPTIONS_PER_USER", DEFAULT_SUBSCRIPTIONS_PER_USER
        ),
        "tickers": _count(environ, "STOCKALERT_MAX_TICKERS", DEFAULT_MAX_TICKERS),
        "request_bytes": _count(
            environ, "STOCKALERT_GRPC_MAX_REQUEST_BYTES", DEFAULT_REQUEST_BYTES, minimum=1024
        ),
    }


def telemetry_config(environ: Mapping[str, str], role: str) -> dict[str, Any]:
    """The role (every metric's label) and STOCKALERT_METRICS_PORT: PORT (all interfaces, as
    a scraper in another container needs) or HOST:PORT; unset, no metrics endpoint."""
    raw = environ.get("STOCKALERT_METRICS_PORT", "").strip()
    address = None
    if raw:
        full = raw if ":" in raw else f"0.0.0.0:{raw}"
        address = _address({"STOCKALERT_METRICS_PORT": full}, "STOCKALERT_METRICS_PORT", "")
    log_format = environ.get("STOCKALERT_LOG_FORMAT", "").strip().lower() or "text"
    if log_format not in ("text", "json"):
        raise ConfigError(f"STOCKALERT_LOG_FORMAT={log_format!r} must be text or json")
    return {"role": role, "metrics_addr": address, "log_format": log_format}


def retention_config(environ: Mapping[str, str]) -> dict[str, float | int]:
    """Retention settings of the cleaner."""
    return {
        "quote_retention_s": _seconds(
            environ, "STOCKALERT_QUOTE_RETENTION_S", DEFAULT_QUOTE_RETENTION_S, minimum=1.0
        ),
        "keep_quotes": _count(environ, "STOCKALERT_KEEP_QUOTES", DEFAULT_KEEP_QUOTES),
        "request_ttl_s": _seconds(
            environ, "STOCKALERT_REQUEST_TTL_S", DEFAULT_REQUEST_TTL_S, minimum=1.0
        ),
        "interval_s": _seconds(
            environ, "STOCKALERT_CLEAN_INTERVAL", DEFAULT_CLEAN_INTERVAL_S, minimum=0.05
        ),
    }


def _collection(environ: Mapping[str, str]) -> dict[str, Any]:
    return {
        "prices": _prices(environ),
        "collect_interval": _seconds(
            environ, "STOCKALERT_COLLECT_INTERVAL", DEFAULT_COLLECT_INTERVAL_S
        ),
        "stale_after_s": _seconds(environ, "STOCKALERT_STALE_AFTER_S", 3600.0, minimum=1.0),
        "fetch_timeout_s": _seconds(environ, "STOCKALERT_FETCH_TIMEOUT_S", 10.0, minimum=0.1),
        "breaker": {
            "failures": _count(environ, "STOCKALERT_BREAKER_FAILURES", 3),
            "recovery_s": _seconds(environ, "STOCKALERT_BREAKER_RECOVERY_S", 300.0, minimum=0.1),
            "slow_s": _seconds(environ, "STOCKALERT_BREAKER_SLOW_S", 30.0, minimum=0.1),
        },
    }


def _delivery(environ: Mapping[str, str]) -> dict[str, Any]:
    outbox = environ.get("STOCKALERT_OUTBOX_DIR", "").strip() or "outbox"
    return {
        "mail": mail_config(environ, outbox),
        "mail_retry": mail_retry_config(environ),
        "delivery_interval": _seconds(
            environ, "STOCKALERT_DELIVERY_INTERVAL", DEFAULT_DELIVERY_INTERVAL_S
        ),
    }


def _required_secret(environ: Mapping[str, str], role: str) -> str:
    secret = environ.get("STOCKALERT_AUTH_SECRET", "")
    if not secret:
        raise ConfigError(
            f"STOCKALERT_AUTH_SECRET is required by {role}: the token signing key, the same "
            "for command-api and query-api"
        )
    return _checked_secret(secret)


def _checked_secret(secret: str) -> str:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"STOCKALERT_AUTH_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    return secret


# ----- one function per role: the whole configuration of its container ------------------------


def command_api_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """`serve command-api`."""
    return {
        **core_config(environ, "command-api"),
        "auth_secret": _required_secret(environ, "command-api"),
        "grpc_addr": _address(environ, "STOCKALERT_GRPC_ADDR", DEFAULT_GRPC_ADDR),
        "grpc_workers": _grpc_workers(environ),
        "limits": limits_config(environ),
    }


def query_api_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """`serve query-api`."""
    return {
        **core_config(environ, "query-api"),
        "auth_secret": _required_secret(environ, "query-api"),
        "query_addr": _address(environ, "STOCKALERT_QUERY_ADDR", DEFAULT_QUERY_ADDR),
        "grpc_workers": _grpc_workers(environ),
        "limits": limits_config(environ),
    }


def collector_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """`serve collector`: price source, interval, staleness, fetch timeout, breaker."""
    return {**core_config(environ, "collector"), **_collection(environ)}


def notifier_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """`serve notifier`: the mailer, retry backoff and how often due e-mails are looked for;
    with STOCKALERT_KAFKA_BOOTSTRAP, a member of the notifier group on to-notifier."""
    return {**core_config(environ, "notifier"), **_delivery(environ)}


def alert_system_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """`serve alert-system`: the database and Kafka (it reads to-alert-system)."""
    config = core_config(environ, "alert-system")
    if config["transport"] != "kafka":
        raise ConfigError("STOCKALERT_KAFKA_BOOTSTRAP is required by alert-system: HOST:PORT,...")
    return config


def cleaner_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """`serve cleaner`: retention."""
    return {**core_config(environ, "cleaner"), "cleaner": retention_config(environ)}


def _prices(environ: Mapping[str, str]) -> dict[str, str]:
    raw = environ.get("STOCKALERT_PRICE_SOURCE", "").strip()
    if raw.startswith("replay:") and raw[len("replay:") :]:
        path = Path(raw[len("replay:") :])
        if not path.is_file():
            raise ConfigError(f"STOCKALERT_PRICE_SOURCE={raw!r}: no such file {path}")
        return {"kind": "replay", "path": str(path)}
    if raw in ("yfinance", "yfinance-chart"):
        return {"kind": raw.replace("-", "_"), "path": ""}
    raise ConfigError(
        f"STOCKALERT_PRICE_SOURCE={raw!r} must be yfinance, yfinance-chart or replay:PATH "
        "(a CSV timestamp,ticker,price)"
    )


def _auth_secret(environ: Mapping[str, str], state_dir: Path) -> str:
    secret = environ.get("STOCKALERT_AUTH_SECRET", "")
    if secret:
        return _checked_secret(secret)
    # Embedded run without a configured secret: generate one once, keep it private.
    path = state_dir / "auth-secret"
    if path.exists():
        stored = path.read_text().strip()
        if len(stored.encode()) >= MIN_SECRET_BYTES:
            return stored
    private_dir(state_dir)
    fresh = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(fresh + "\n")
    return fresh


def embedded_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """`stockalert run` (and `check-config`): every role's settings; the token key is
    generated into the state folder when STOCKALERT_AUTH_SECRET is unset. The embedded run
    keeps its events in the process, whatever STOCKALERT_KAFKA_BOOTSTRAP says."""
    core = core_config(environ, "embedded")
    core["transport"] = "inprocess"
    return {
        **core,
        "cleaner": retention_config(environ),
        "auth_secret": _auth_secret(environ, Path(core["state_dir"])),
        "grpc_addr": _address(environ, "STOCKALERT_GRPC_ADDR", DEFAULT_GRPC_ADDR),
        "grpc_workers": _grpc_workers(environ),
        "limits": limits_config(environ),
        **_delivery(environ),
        **_collection(environ),
    }


def kafka_admin_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """`serve kafka-admin`: Kafka only (no database)."""
    config = {
        **kafka_config(environ, "stockalert-kafka-admin"),
        **telemetry_config(environ, "kafka-admin"),
    }
    if config["transport"] != "kafka":
        raise ConfigError("STOCKALERT_KAFKA_BOOTSTRAP is required by kafka-admin: HOST:PORT,...")
    return config

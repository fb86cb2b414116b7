"""Configuration from STOCKALERT_* environment variables, validated up front.

Every error names the variable; the result is the plain dict the container's
`Configuration(strict=True)` is filled from.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stockalert.adapters.tokens import MIN_SECRET_BYTES

DEFAULT_GRPC_ADDR = "127.0.0.1:50051"
DEFAULT_QUERY_ADDR = "127.0.0.1:50052"
DEFAULT_COLLECT_INTERVAL_S = 180.0
SUPPORTED_DB_URLS = ("memory://",)


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the variable."""


def _address(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, "").strip() or default
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name}={value!r} must be HOST:PORT (port 0-65535)")
    return value


def _interval(environ: Mapping[str, str]) -> float:
    raw = environ.get("STOCKALERT_COLLECT_INTERVAL", "").strip()
    if not raw:
        return DEFAULT_COLLECT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"STOCKALERT_COLLECT_INTERVAL={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0.05:
        raise ConfigError(f"STOCKALERT_COLLECT_INTERVAL={raw!r} must be at least 0.05 seconds")
    return value


def _prices(environ: Mapping[str, str]) -> dict[str, str]:
    raw = environ.get("STOCKALERT_PRICE_SOURCE", "").strip()
    if raw.startswith("replay:") and raw[len("replay:") :]:
        path = Path(raw[len("replay:") :])
        if not path.is_file():
            raise ConfigError(f"STOCKALERT_PRICE_SOURCE={raw!r}: no such file {path}")
        return {"kind": "replay", "path": str(path)}
    if raw == "yfinance":
        raise ConfigError(
            "STOCKALERT_PRICE_SOURCE=yfinance is not available in this build yet "
            "(use replay:PATH; yfinance arrives with the price-collection issue)"
        )
    raise ConfigError(
        f"STOCKALERT_PRICE_SOURCE={raw!r} must be replay:PATH (a CSV timestamp,ticker,price)"
    )


def _auth_secret(environ: Mapping[str, str], state_dir: Path) -> str:
    secret = environ.get("STOCKALERT_AUTH_SECRET", "")
    if secret:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"STOCKALERT_AUTH_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        return secret
    # Embedded run without a configured secret: generate one once, keep it private.
    path = state_dir / "auth-secret"
    if path.exists():
        stored = path.read_text().strip()
        if len(stored.encode()) >= MIN_SECRET_BYTES:
            return stored
    state_dir.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(fresh + "\n")
    return fresh


def embedded_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings of `stockalert run` (and `check-config`)."""
    db_url = environ.get("STOCKALERT_DB_URL", "").strip() or "memory://"
    if db_url not in SUPPORTED_DB_URLS:
        raise ConfigError(
            f"STOCKALERT_DB_URL={db_url!r} is not supported by this build "
            f"(supported: {', '.join(SUPPORTED_DB_URLS)})"
        )
    if environ.get("STOCKALERT_SMTP_HOST", "").strip():
        raise ConfigError(
            "STOCKALERT_SMTP_HOST is set but SMTP delivery is not in this build yet; "
            "unset it to write .eml files to STOCKALERT_OUTBOX_DIR"
        )
    state_dir = Path(environ.get("STOCKALERT_STATE_DIR", "").strip() or ".stockalert")
    outbox = environ.get("STOCKALERT_OUTBOX_DIR", "").strip() or "outbox"
    return {
        "db_url": db_url,
        "state_dir": str(state_dir),
        "auth_secret": _auth_secret(environ, state_dir),
        "grpc_addr": _address(environ, "STOCKALERT_GRPC_ADDR", DEFAULT_GRPC_ADDR),
        "collect_interval": _interval(environ),
        "mail": {"kind": "outbox", "outbox_dir": outbox},
        "prices": _prices(environ),
    }

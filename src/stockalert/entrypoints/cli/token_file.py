"""Where `stockalert login` keeps the bearer token: a 0600 file, or STOCKALERT_TOKEN."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path


def token_path() -> Path:
    """Where `login` keeps the token: $XDG_CONFIG_HOME/stockalert/token.json."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stockalert" / "token.json"


def save_token(token: str, expires_at: datetime, email: str) -> Path:
    """Write the token file, readable by its owner only, atomically."""
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".token-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(
                {"token": token, "expires_at": expires_at.isoformat(), "email": email}, handle
            )
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def load_token() -> dict[str, str]:
    """STOCKALERT_TOKEN if set, else the token file, else empty."""
    if os.environ.get("STOCKALERT_TOKEN"):
        return {"token": os.environ["STOCKALERT_TOKEN"]}
    try:
        data = json.loads(token_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def forget_token() -> None:
    """Remove the token file (logout)."""
    token_path().unlink(missing_ok=True)

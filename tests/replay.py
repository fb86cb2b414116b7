"""Replay price files for tests that start `stockalert run` or the collector role."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path


def write_replay(
    path: Path,
    rows: Sequence[Mapping[str, float]],
    start: datetime,
    step: timedelta = timedelta(minutes=1),
) -> Path:
    """A replay file (CSV `timestamp,ticker,price`): `rows[i]` gives each ticker's price at
    `start + i * step`, one distinct timestamp (one collection cycle) per row."""
    lines = ["timestamp,ticker,price"]
    for index, prices in enumerate(rows):
        at = (start + index * step).isoformat().replace("+00:00", "Z")
        lines += [f"{at},{ticker},{price:.2f}" for ticker, price in prices.items()]
    path.write_text("\n".join(lines) + "\n")
    return path

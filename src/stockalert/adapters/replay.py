"""Replay price files (ARCHITECTURE.md section 6): offline, deterministic quotes.

A CSV with the header `timestamp,ticker,price`; timestamps are ISO-8601 in UTC. Quotes are
grouped by distinct timestamp, oldest first: one group per collection cycle.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from stockalert.domain.errors import InvalidArgument
from stockalert.domain.model import Quote, Ticker, parse_price
from stockalert.domain.ports import FetchFailed, PriceResult, UnknownTicker

HEADER = ["timestamp", "ticker", "price"]


class ReplayFileError(ValueError):
    """The file cannot be replayed; the message names the file, line and field."""


def parse_timestamp(text: str, field: str = "timestamp") -> datetime:
    """An ISO-8601 timestamp with an explicit UTC offset, returned in UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(field, f"{text!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        raise InvalidArgument(field, f"{text!r} has no UTC offset (add Z or +00:00)")
    return parsed.astimezone(UTC)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or [f.strip() for f in reader.fieldnames] != HEADER:
            raise ReplayFileError(f"{path}:1: header must be {','.join(HEADER)}")
        for row in reader:
            yield reader.line_num, {k.strip(): (v or "") for k, v in row.items() if k}


def read_price_file(path: Path) -> list[tuple[datetime, list[Quote]]]:
    """All quotes of the file grouped by timestamp, oldest group first."""
    if not path.is_file():
        raise ReplayFileError(f"{path}: no such file")
    groups: dict[datetime, dict[Ticker, Quote]] = {}
    for line, row in _rows(path):
        try:
            at = parse_timestamp(row.get("timestamp", ""))
            ticker = Ticker.parse(row.get("ticker", ""))
            raw = row.get("price", "").strip()
            try:
                number = float(raw)
            except ValueError:
                raise InvalidArgument("price", f"{raw!r} is not a number") from None
            price = parse_price(number, "price")
        except InvalidArgument as err:
            raise ReplayFileError(f"{path}:{line}: {err.message}") from None
        group = groups.setdefault(at, {})
        if ticker in group:
            raise ReplayFileError(f"{path}:{line}: ticker: {ticker} appears twice at {at}")
        group[ticker] = Quote(ticker, price, at)
    return [(at, list(groups[at].values())) for at in sorted(groups)]


class ReplayPriceSource:
    """PriceSource port over a price file: each fetch applies the next distinct timestamp.

    A requested ticker gets its newest quote up to the current timestamp (the collector skips
    it when it is not newer than the stored one), or UnknownTicker when the file never
    mentions it. After the last timestamp no new quotes appear; the source keeps answering.
    """

    def __init__(self, path: Path) -> None:
        self._groups = read_price_file(path)
        self._known = {q.ticker for _, quotes in self._groups for q in quotes}
        self._latest: dict[Ticker, Quote] = {}
        self._next = 0
        self._lock = threading.Lock()

    @property
    def exhausted(self) -> bool:
        """True once every timestamp of the file was applied."""
        return self._next >= len(self._groups)

    def fetch(self, tickers: Collection[Ticker]) -> Mapping[Ticker, PriceResult]:
        with self._lock:
            if self._next < len(self._groups):
                for fresh in self._groups[self._next][1]:
                    self._latest[fresh.ticker] = fresh
                self._next += 1
            answer: dict[Ticker, PriceResult] = {}
            for ticker in tickers:
                quote = self._latest.get(ticker)
                if quote is not None:
                    answer[ticker] = quote
                elif ticker in self._known:
                    answer[ticker] = FetchFailed(ticker, "no quote in the replay file yet")
                else:
                    answer[ticker] = UnknownTicker(ticker)
            return answer

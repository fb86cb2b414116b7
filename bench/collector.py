"""Benchmark: one collection cycle through the yfinance adapter, concurrent versus sequential.

    python -m bench.collector [--via quote|chart] [--tickers N] [--latency-ms MS]
                              [--workers N] [--chunk N]

Offline: the transport is the test suite's fake Yahoo (tests/unit/yahoo_fake*.py) mounted on
a requests.Session; it sleeps `latency-ms` in every HTTP request and answers recorded-style
JSON that yfinance's real code parses. `--via quote` (default, the production adapter
YFinanceQuoteSource: quoteSummary + v7 quote, parsed by yfinance's Quote scraper into a
dict) or `--via chart` (YFinanceChartSource: the chart API, parsed by yfinance's history code
into pandas frames). Each variant first runs a warm-up fetch of a few tickers, so the
cookie/crumb handshake and the imports are not timed; then one full `fetch()` of every
ticker is timed.

* concurrent: the adapter as configured for production (`--workers`, default 32);
* sequential: the original design, one ticker after the other: the same adapter and the
  same yfinance calls with max_workers=1.

Via chart, yfinance builds pandas frames (8-11 ms CPU per ticker under the GIL), so a cycle
is bounded by CPU; via quote it is ~1-2 ms per ticker and the cycle is bounded by the two
round trips per ticker over the workers.
The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.unit.yahoo_fake import FakeSymbol, FakeYahoo
from tests.unit.yahoo_fake_quote import FakeYahooQuote

from stockalert.adapters.yfinance.chart import YFinanceChartSource
from stockalert.adapters.yfinance.quote import YFinanceQuoteSource
from stockalert.domain.model import Quote, Ticker

WARM_UP_TICKERS = 4


@dataclass(frozen=True)
class Cycle:
    """One timed fetch of the whole batch."""

    wall_s: float
    cpu_s: float
    requests: int
    outcomes: Counter[str]


def run_cycle(
    via: str, tickers: list[Ticker], latency_s: float, workers: int, chunk: int, cache_dir: Path
) -> Cycle:
    """Warm up, then time one fetch of every ticker through a fresh source and fake Yahoo."""
    fake, source = (
        (FakeYahooQuote, YFinanceQuoteSource)
        if via == "quote"
        else (FakeYahoo, YFinanceChartSource)
    )
    yahoo = fake(latency_s=latency_s, default=FakeSymbol(price=123.45))
    src = source(
        session_factory=yahoo.session,
        cache_dir=cache_dir,
        max_workers=workers,
        chunk_size=chunk,
        deadline_s=600.0,
    )
    src.fetch(tickers[:WARM_UP_TICKERS])  # cookie + crumb handshake, imports, first frames
    sent = len(yahoo.urls)
    wall, cpu = time.perf_counter(), time.process_time()
    results = src.fetch(tickers)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    outcomes = Counter(type(r).__name__ for r in results.values())
    if outcomes[Quote.__name__] != len(tickers):
        raise SystemExit(f"expected {len(tickers)} quotes, got {dict(outcomes)}")
    return Cycle(wall, cpu, len(yahoo.urls) - sent, outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--via", choices=["quote", "chart"], default="quote")
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=1)
    args = parser.parse_args()
    # pandas' own catch_warnings is not thread-safe: with concurrent workers its temporary
    # "always show DeprecationWarning" filter leaks to other threads; route warnings to
    # logging, silenced below ERROR, so that they do not flood the terminal.
    logging.captureWarnings(True)
    logging.basicConfig(level=logging.ERROR)

    tickers = [Ticker(f"T{i:04d}") for i in range(args.tickers)]
    latency_s = args.latency_ms / 1000
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as state:
        concurrent = run_cycle(args.via, tickers, latency_s, args.workers, args.chunk, Path(state))
        print(
            f"via {args.via}: concurrent  workers={args.workers} chunk={args.chunk}:"
            f" {concurrent.wall_s:6.2f} s"
            f" wall, {concurrent.cpu_s:5.2f} s CPU"
            f" ({concurrent.cpu_s / len(tickers) * 1000:.1f} ms CPU per ticker),"
            f" {concurrent.requests} HTTP requests"
        )
        sequential = run_cycle(args.via, tickers, latency_s, 1, 1, Path(state))
        print(
            f"via {args.via}: sequential  one ticker after the other:"
            f" {sequential.wall_s:6.2f} s wall,"
            f" {sequential.cpu_s:5.2f} s CPU, {sequential.requests} HTTP requests"
        )
    print(
        f"collector tickers={args.tickers} latency_ms={args.latency_ms}"
        f" cycle_s={concurrent.wall_s:.2f} sequential_s={sequential.wall_s:.2f}"
        f" speedup={sequential.wall_s / concurrent.wall_s:.2f}"
    )


if __name__ == "__main__":
    main()

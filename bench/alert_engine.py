"""Benchmark: the incremental alert engine against the naive reference on the same input.

    python -m bench.alert_engine [--subs N] [--tickers N] [--cycles N] [--seed N]

Seeded and deterministic. 1,000,000 subscriptions over 2,000 tickers with Zipf(1.1)
popularity; a high threshold +2%..+30% above the ticker's start price, a low one -30%..-2%
below, or both (one third each); 20 cycles of a random walk, one quote per ticker per cycle,
in two regimes: calm (0.2% per step) and storm (1% per step). Both engines see the same quotes
and must emit the same notifications. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import resource
import time
from collections.abc import Callable, Sequence, Sized
from datetime import UTC, datetime, timedelta

from stockalert.domain.alerting import AlertEngine, ReferenceAlertEngine
from stockalert.domain.model import Email, Notification, Quote, Subscription, Ticker

ZIPF_EXPONENT = 1.1
REGIMES = (("calm", 0.002), ("storm", 0.01))
START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
CYCLE = timedelta(seconds=180)


def make_subscriptions(
    rng: random.Random, n_subs: int, n_tickers: int
) -> tuple[list[Ticker], list[float], list[Subscription]]:
    """Tickers, their start prices, and the subscriptions (seeded)."""
    tickers = [Ticker(f"T{i:04d}") for i in range(n_tickers)]
    starts = [round(rng.uniform(5.0, 500.0), 2) for _ in tickers]
    weights = list(
        itertools.accumulate(1.0 / (rank**ZIPF_EXPONENT) for rank in range(1, n_tickers + 1))
    )
    picks = rng.choices(range(n_tickers), cum_weights=weights, k=n_subs)
    emails = [Email(f"user{i}@example.com") for i in range(min(n_subs, 50_000))]
    subs = []
    for i, t in enumerate(picks):
        start = starts[t]
        kind = rng.randrange(3)
        high = start * (1 + rng.uniform(0.02, 0.30)) if kind in (0, 2) else None
        low = start * (1 - rng.uniform(0.02, 0.30)) if kind in (1, 2) else None
        subs.append(
            Subscription(
                subscription_id=f"s{i}",
                user_id=f"u{i % len(emails)}",
                email=emails[i % len(emails)],
                ticker=tickers[t],
                high_value=high,
                low_value=low,
            )
        )
    return tickers, starts, subs


def make_walk(
    rng: random.Random,
    tickers: Sequence[Ticker],
    starts: Sequence[float],
    cycles: int,
    sigma: float,
) -> list[list[Quote]]:
    """One quote per ticker per cycle, price multiplied by (1 + N(0, sigma)) each step."""
    prices = list(starts)
    walk = []
    for cycle in range(1, cycles + 1):
        at = START + cycle * CYCLE
        quotes = []
        for i, ticker in enumerate(tickers):
            prices[i] = max(0.01, prices[i] * (1 + rng.gauss(0.0, sigma)))
            quotes.append(Quote(ticker, prices[i], at))
        walk.append(quotes)
    return walk


def run(
    apply: Callable[[Quote], list[Notification]],
    walk: list[list[Quote]],
    after_cycle: Callable[[], Sized] = list,
) -> tuple[list[float], list[list[tuple[str, str, float]]], int]:
    """Seconds per cycle, per cycle the notifications in a canonical order, state changes."""
    seconds, outputs, changes = [], [], 0
    for quotes in walk:
        emitted: list[Notification] = []
        gc_was = gc.isenabled()
        gc.disable()
        began = time.perf_counter()
        for quote in quotes:
            emitted.extend(apply(quote))
        changes += len(after_cycle())
        seconds.append(time.perf_counter() - began)
        if gc_was:
            gc.enable()
        outputs.append(sorted((n.notification_id, n.kind.value, n.price) for n in emitted))
    return seconds, outputs, changes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subs", type=int, default=1_000_000)
    parser.add_argument("--tickers", type=int, default=2_000)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    tickers, starts, subs = make_subscriptions(rng, args.subs, args.tickers)
    results: dict[str, tuple[float, float]] = {}
    same = True
    for name, sigma in REGIMES:
        walk = make_walk(random.Random(f"{args.seed}-{name}"), tickers, starts, args.cycles, sigma)

        engine = AlertEngine()
        began = time.perf_counter()
        engine.load(subs)
        load_s = time.perf_counter() - began
        fast_s, fast_out, changes = run(engine.apply, walk, engine.drain_changes)
        del engine
        gc.collect()

        reference = ReferenceAlertEngine()
        for sub in subs:
            reference.upsert(sub)
        slow_s, slow_out, _ = run(reference.apply, walk)
        del reference
        gc.collect()

        crossings = sum(len(out) for out in fast_out)
        same = same and fast_out == slow_out
        fast_ms = 1000 * sum(fast_s) / len(fast_s)
        slow_ms = 1000 * sum(slow_s) / len(slow_s)
        results[name] = (fast_ms, sum(slow_s) / sum(fast_s))
        print(
            f"{name}: load_s={load_s:.2f} notifications={crossings} "
            f"({crossings / args.cycles:.0f}/cycle) "
            f"state_changes/cycle={changes / args.cycles:.0f} "
            f"incremental_ms_per_cycle={fast_ms:.2f} "
            f"(max {1000 * max(fast_s):.2f}) naive_ms_per_cycle={slow_ms:.1f}"
            f" same_output={fast_out == slow_out}",
            flush=True,
        )

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    calm_ms, calm_speedup = results["calm"]
    storm_ms, storm_speedup = results["storm"]
    print(
        f"alert-engine subs={args.subs} tickers={args.tickers} cycles={args.cycles} "
        f"calm_ms={calm_ms:.2f} calm_speedup={calm_speedup:.1f} storm_ms={storm_ms:.2f} "
        f"storm_speedup={storm_speedup:.1f} rss_mb={rss_mb:.0f} same_output={str(same).lower()}"
    )


if __name__ == "__main__":
    main()

"""The `stockalert` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from stockalert import __version__
from stockalert.adapters.replay import ReplayFileError
from stockalert.containers import ConfigError, from_environ
from stockalert.entrypoints.backtest import describe, run_backtest

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_DATA = 65  # EX_DATAERR from sysexits.h: an input file is malformed
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; subcommands are added as their roles land."""
    parser = argparse.ArgumentParser(
        prog="stockalert",
        description="Watch stock prices and e-mail users once per threshold crossing.",
    )
    parser.add_argument("--version", action="version", version=f"stockalert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "check-config",
        help="validate the STOCKALERT_* environment and build every component",
        description="Validate the STOCKALERT_* environment and build every component.",
    )
    backtest = sub.add_parser(
        "backtest",
        help="replay a price file against subscriptions and print each alert",
        description=(
            "Replay PRICES (CSV: timestamp,ticker,price) against SUBSCRIPTIONS (CSV: "
            "email,ticker,high_value,low_value[,rearm_percent,cooldown_s,remind_every_s]) "
            "through the real alert pipeline in memory, printing one line per e-mail."
        ),
    )
    backtest.add_argument("prices", type=Path, metavar="PRICES")
    backtest.add_argument("subscriptions", type=Path, metavar="SUBSCRIPTIONS")
    return parser


def _backtest(args: argparse.Namespace) -> int:
    try:
        result = run_backtest(
            args.prices, args.subscriptions, lambda note: print(describe(note), flush=True)
        )
    except ReplayFileError as err:
        print(f"stockalert: {err}", file=sys.stderr)
        return EXIT_DATA
    print(
        f"backtest cycles={result.cycles} quotes={result.quotes} "
        f"notifications={len(result.notifications)}"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "backtest":
        return _backtest(args)
    try:
        container = from_environ(os.environ)
        container.check_dependencies()
        container.bus()
    except ConfigError as err:
        print(f"stockalert: configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    print("configuration ok")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

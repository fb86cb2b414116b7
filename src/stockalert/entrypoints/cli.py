"""The `stockalert` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from stockalert import __version__
from stockalert.containers import ConfigError, from_environ

EXIT_OK = 0
EXIT_USAGE = 2
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
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

"""The server-side subcommands: run (embedded), serve ROLE, db upgrade, check-config,
backtest. Their modules load only when one of them runs, so the client commands start fast."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from stockalert.entrypoints.roles import ROLES

EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE from sysexits.h: a service we need is down


def log_level(args: argparse.Namespace) -> int:
    """INFO by default (no line per routine cycle), DEBUG with -v, WARNING with -q."""
    if args.verbose:
        return logging.DEBUG
    return logging.WARNING if args.quiet else logging.INFO


def cmd_run(args: argparse.Namespace) -> int:
    from stockalert.entrypoints.run import run_with
    from stockalert.entrypoints.runtime import run_until_signalled
    from stockalert.entrypoints.settings import embedded_config

    config = embedded_config(os.environ)  # a bad variable exits 78 before anything starts
    run_until_signalled(lambda stop: run_with(config, stop), log_level(args), config["log_format"])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from stockalert.entrypoints.runtime import run_role, run_until_signalled

    role = importlib.import_module(ROLES[args.role].module)
    config = role.settings(os.environ)  # a bad variable exits 78 before anything starts
    run_until_signalled(
        lambda stop: run_role(role, config, stop), log_level(args), config["log_format"]
    )
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError

    from stockalert.entrypoints.run import upgrade_database

    try:
        revision = upgrade_database(os.environ)
    except DBAPIError as err:
        print(f"stockalert db upgrade: database unavailable: {err.orig}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"database at revision {revision}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from stockalert.entrypoints.run import build

    container, _ = build(os.environ)
    container.bus()
    print("configuration ok")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from stockalert.entrypoints.backtest import describe, run_backtest

    result = run_backtest(
        args.prices, args.subscriptions, lambda note: print(describe(note), flush=True)
    )
    print(
        f"backtest cycles={result.cycles} quotes={result.quotes} "
        f"notifications={len(result.notifications)}"
    )
    return 0

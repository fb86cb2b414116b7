"""The `stockalert` command: the embedded run, one role, the API client, and tools.

Exit codes: 0 ok, 1 other failure (including a server unreachable after retries), 2 usage or
invalid input, 3 not found, 4 authentication / permission, 5 already exists, 65 malformed
input file, 69 database unavailable, 78 configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from stockalert import __version__
from stockalert.adapters.binding import BindError
from stockalert.adapters.grpc.client import ApiError
from stockalert.adapters.replay import ReplayFileError
from stockalert.entrypoints.cli import client_commands as client
from stockalert.entrypoints.cli import server_commands as server
from stockalert.entrypoints.cli.client_commands import UsageError
from stockalert.entrypoints.roles import ROLES
from stockalert.entrypoints.settings import DEFAULT_GRPC_ADDR, ConfigError

EXIT_OK = 0
EXIT_OTHER = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4
EXIT_EXISTS = 5
EXIT_DATA = 65  # EX_DATAERR from sysexits.h: an input file is malformed
EXIT_UNAVAILABLE = server.EXIT_UNAVAILABLE
EXIT_LIMIT = 75  # EX_TEMPFAIL from sysexits.h: a quota or a login throttle; later, or make room
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h

EXIT_BY_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED: EXIT_LIMIT,
}

INT32_MAX = 2**31 - 1
DEFAULT_AVERAGE_COUNT = 10


def _int32(text: str) -> int:
    """A whole number that fits the API's int32 fields (range checks stay server-side)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not -INT32_MAX - 1 <= value <= INT32_MAX:
        raise argparse.ArgumentTypeError(f"{text} is out of range")
    return value


def _finite(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _verbosity(command: argparse.ArgumentParser) -> None:
    group = command.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="log every cycle (DEBUG)")
    group.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="stockalert",
        description="Watch stock prices and e-mail users once per threshold crossing.",
        epilog=__doc__.split("\n\n")[1],
    )
    parser.add_argument("--version", action="version", version=f"stockalert {__version__}")
    parser.add_argument(
        "--addr",
        default=os.environ.get("STOCKALERT_GRPC_ADDR") or DEFAULT_GRPC_ADDR,
        help="command API address (env STOCKALERT_GRPC_ADDR; default %(default)s)",
    )
    parser.add_argument(
        "--query-addr",
        default=os.environ.get("STOCKALERT_QUERY_ADDR") or None,
        help="query API address (env STOCKALERT_QUERY_ADDR; default: --addr)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt")
    parser.add_argument("--json", action="store_true", help="print replies as JSON")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        command = sub.add_parser(name, help=text, description=text)
        command.set_defaults(handler=handler)
        return command

    _server_commands(add)
    _client_commands(add)
    return parser


Add = Callable[[str, Callable[[argparse.Namespace], int], str], Any]


def _server_commands(add: Add) -> None:
    run = add(
        "run", server.cmd_run, "run every role in one process (embedded mode) until SIGINT/SIGTERM"
    )
    _verbosity(run)
    add("check-config", server.cmd_check_config, "validate the STOCKALERT_* environment")
    serve = add(
        "serve",
        server.cmd_serve,
        "run one role of the distributed system as its own process (`serve ROLE --help` "
        "says what it does and what it reads)",
    )
    roles = serve.add_subparsers(dest="role", metavar="ROLE", required=True)
    for role in ROLES.values():
        command = roles.add_parser(
            role.name,
            help=role.summary,
            description=role.help_text(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _verbosity(command)
    db = add("db", lambda _: EXIT_USAGE, "database administration")
    db_sub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    upgrade = db_sub.add_parser(
        "upgrade",
        help="migrate STOCKALERT_DB_URL to the newest schema",
        description="Migrate STOCKALERT_DB_URL to the newest schema (Alembic).",
    )
    upgrade.set_defaults(handler=server.cmd_db_upgrade)
    backtest = add(
        "backtest",
        server.cmd_backtest,
        "replay PRICES (CSV timestamp,ticker,price) against SUBSCRIPTIONS (CSV email,ticker,"
        "high_value,low_value[,rearm_percent,cooldown_s,remind_every_s]) in memory and print "
        "one line per e-mail",
    )
    backtest.add_argument("prices", type=Path, metavar="PRICES")
    backtest.add_argument("subscriptions", type=Path, metavar="SUBSCRIPTIONS")


def _client_commands(add: Add) -> None:
    for name, handler, text in (
        ("register", client.cmd_register, "create an account (then log in)"),
        (
            "login",
            client.cmd_login,
            "log in and keep the token (0600 file, or set STOCKALERT_TOKEN)",
        ),
    ):
        command = add(name, handler, text)
        command.add_argument("email")
        command.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
    add("logout", client.cmd_logout, "forget the stored token")

    watch = add("watch", client.cmd_watch, "create or change the alert thresholds of a ticker")
    watch.add_argument("ticker")
    watch.add_argument("--high", type=_finite, help="alert when the price goes above this")
    watch.add_argument("--low", type=_finite, help="alert when the price goes below this")
    watch.add_argument("--rearm-percent", type=_finite, help="re-arm band in percent (1)")
    watch.add_argument("--cooldown", type=_finite, help="seconds a fired side stays fired (0=off)")
    watch.add_argument("--remind-every", type=_finite, help="reminder period in s (0=off)")
    watch.add_argument("--clear-high", action="store_true", help="remove the high threshold")
    watch.add_argument("--clear-low", action="store_true", help="remove the low threshold")

    unwatch = add("unwatch", client.cmd_unwatch, "stop watching a ticker")
    unwatch.add_argument("ticker")
    latest = add("latest", client.cmd_latest, "newest price of a watched ticker")
    latest.add_argument("ticker", nargs="?", help="default: your only ticker")
    average = add("average", client.cmd_average, "mean of the newest N prices of a watched ticker")
    average.add_argument("ticker", nargs="?", help="default: your only ticker")
    average.add_argument(
        "--count",
        type=_int32,
        default=DEFAULT_AVERAGE_COUNT,
        help="how many quotes, >= 1 (default %(default)s)",
    )
    add("subscriptions", client.cmd_subscriptions, "your tickers, thresholds and alert states")
    notifications = add("notifications", client.cmd_notifications, "your alert history")
    notifications.add_argument("--limit", type=_int32, default=0, help="at most this many")
    delete = add("delete-account", client.cmd_delete_account, "delete your account and its data")
    delete.add_argument("--email", help="the account (default: the logged-in one)")
    delete.add_argument("--password-stdin", action="store_true", help="read password from stdin")


def hint(err: ApiError, args: argparse.Namespace) -> str:
    """What to do about an error the user can fix."""
    if err.code == grpc.StatusCode.UNAUTHENTICATED and err.message == "not logged in":
        return (
            "log in with `stockalert login EMAIL` (or create an account with `stockalert "
            "register EMAIL`), or set STOCKALERT_TOKEN"
        )
    if err.code == grpc.StatusCode.UNAUTHENTICATED and args.command not in ("login", "register"):
        return "log in again with `stockalert login EMAIL`"
    if err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        where = ", ".join(sorted({args.addr, args.query_addr or args.addr}))
        return (
            f"no stockalert server answered at {where}: start one with `stockalert run`, or "
            "point --addr / STOCKALERT_GRPC_ADDR (and --query-addr) at a running one"
        )
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except ApiError as err:
        print(f"stockalert {args.command}: {err.code.name}: {err.message}", file=sys.stderr)
        advice = hint(err, args)
        if advice:
            print(f"hint: {advice}", file=sys.stderr)
        return EXIT_BY_STATUS.get(err.code, EXIT_OTHER)
    except UsageError as err:
        print(f"stockalert {args.command}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ReplayFileError as err:
        print(f"stockalert: {err}", file=sys.stderr)
        return EXIT_DATA
    except (ConfigError, BindError) as err:
        print(f"stockalert: configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130

"""The `stockalert` command: the embedded run, the API client, and tools.

Exit codes: 0 ok, 1 other failure (including UNAVAILABLE after retries), 2 usage or invalid
input, 3 not found, 4 authentication / permission, 5 already exists, 65 malformed input file,
69 database unavailable, 78 configuration error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from stockalert import __version__
from stockalert.adapters.grpc.client import ApiError, StockAlertClient
from stockalert.adapters.grpc.server import BindError
from stockalert.adapters.replay import ReplayFileError
from stockalert.api.v1 import stockalert_pb2 as pb
from stockalert.entrypoints.settings import DEFAULT_GRPC_ADDR, ConfigError

EXIT_OK = 0
EXIT_OTHER = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4
EXIT_EXISTS = 5
EXIT_DATA = 65  # EX_DATAERR from sysexits.h: an input file is malformed
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE from sysexits.h: a service we need is down
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h

EXIT_BY_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_EXISTS,
}


class UsageError(Exception):
    """The command line is wrong in a way argparse cannot see."""


# ----- token storage ---------------------------------------------------------------------


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


# ----- helpers ---------------------------------------------------------------------------


def read_password(args: argparse.Namespace, prompt: str = "Password: ") -> str:
    """From stdin (--password-stdin, first line) or an interactive prompt."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to prompt for the password; use --password-stdin")
    return getpass.getpass(prompt)


def client_for(args: argparse.Namespace, token: str | None = None) -> StockAlertClient:
    """A client of the configured addresses, with the stored token unless given one."""
    stored = load_token()
    return StockAlertClient(
        args.addr,
        args.query_addr or args.addr,
        token if token is not None else stored.get("token"),
        timeout_s=args.timeout,
    )


def emit(args: argparse.Namespace, message: Any, text: str) -> None:
    """The reply as JSON (--json) or as a human line."""
    if args.json:
        print(json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2))
    else:
        print(text)


def _value(message: Any, field: str) -> str:
    return f"{getattr(message, field):g}" if message.HasField(field) else "-"


def _status(value: int, enum: Any, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix) if value else "-"


def describe_subscription(sub: pb.Subscription) -> str:
    """One line per subscription."""
    return (
        f"{sub.ticker:<10} high={_value(sub, 'high_value')} "
        f"({_status(sub.high_status, pb.SideStatus, 'SIDE_STATUS_')}) "
        f"low={_value(sub, 'low_value')} "
        f"({_status(sub.low_status, pb.SideStatus, 'SIDE_STATUS_')}) "
        f"rearm={sub.rearm_percent:g}% cooldown_s={_value(sub, 'cooldown_s')} "
        f"remind_every_s={_value(sub, 'remind_every_s')} "
        f"ticker={_status(sub.ticker_status, pb.TickerStatus, 'TICKER_STATUS_')}"
    )


# ----- commands --------------------------------------------------------------------------


def cmd_register(args: argparse.Namespace) -> int:
    password = read_password(args)
    with client_for(args, token="") as client:
        reply = client.register(args.email, password)
        login = client.login(args.email, password)
    save_token(login.token, login.expires_at.ToDatetime(UTC), args.email)
    emit(args, reply, f"registered {args.email} (user {reply.user_id}); logged in")
    return EXIT_OK


def cmd_login(args: argparse.Namespace) -> int:
    password = read_password(args)
    with client_for(args, token="") as client:
        reply = client.login(args.email, password)
    expires = reply.expires_at.ToDatetime(UTC)
    path = save_token(reply.token, expires, args.email)
    emit(args, reply, f"logged in as {args.email} until {expires.isoformat()} (token in {path})")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace) -> int:
    token_path().unlink(missing_ok=True)
    print(json.dumps({"logged_out": True}) if args.json else "logged out")
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {
        "high_value": args.high,
        "low_value": args.low,
        "rearm_percent": args.rearm_percent,
        "cooldown_s": args.cooldown,
        "remind_every_s": args.remind_every,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    with client_for(args) as client:
        reply = client.set_subscription(
            args.ticker,
            clear_high_value=args.clear_high,
            clear_low_value=args.clear_low,
            **fields,
        )
    emit(args, reply, "watching " + describe_subscription(reply.subscription))
    return EXIT_OK


def cmd_unwatch(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        reply = client.remove_subscription(args.ticker)
    emit(args, reply, f"no longer watching {args.ticker.upper()}")
    return EXIT_OK


def cmd_latest(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        reply = client.latest(args.ticker or "")
    quoted = reply.quoted_at.ToDatetime(UTC).isoformat()
    emit(args, reply, f"{reply.ticker} {reply.value:.4f} at {quoted}")
    return EXIT_OK


def cmd_average(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        reply = client.average(args.count, args.ticker or "")
    emit(
        args,
        reply,
        f"{reply.ticker} average of the newest {reply.samples} quotes: {reply.average_value:.4f}",
    )
    return EXIT_OK


def cmd_subscriptions(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        reply = client.subscriptions()
    lines = [describe_subscription(s) for s in reply.subscriptions] or ["no subscriptions"]
    emit(args, reply, "\n".join(lines))
    return EXIT_OK


def cmd_notifications(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        reply = client.notifications(args.limit)
    lines = [
        f"{n.quoted_at.ToDatetime(UTC).isoformat()} {n.ticker} "
        f"{pb.Side.Name(n.side).removeprefix('SIDE_')} "
        f"{pb.NotificationKind.Name(n.kind).removeprefix('NOTIFICATION_KIND_')} "
        f"price={n.price:g} threshold={n.threshold:g} "
        f"{pb.DeliveryStatus.Name(n.status).removeprefix('DELIVERY_STATUS_')}"
        + (f" attempts={n.attempts}" if n.attempts > 1 or n.last_error else "")
        + (f" error={n.last_error!r}" if n.last_error else "")
        + (
            f" next_attempt_at={n.next_attempt_at.ToDatetime(UTC).isoformat()}"
            if n.HasField("next_attempt_at")
            else ""
        )
        for n in reply.notifications
    ] or ["no notifications"]
    emit(args, reply, "\n".join(lines))
    return EXIT_OK


def cmd_delete_account(args: argparse.Namespace) -> int:
    email = args.email or load_token().get("email")
    if not email:
        raise UsageError("which account? pass --email (no e-mail is stored with the token)")
    # Deleting is irreversible: the server wants a fresh login, so log in again first.
    password = read_password(args, f"Password of {email} (to confirm deletion): ")
    with client_for(args, token="") as client:
        client.login(email, password)
        reply = client.delete_user()
    if load_token().get("email", "").lower() == email.lower():
        token_path().unlink(missing_ok=True)  # only the deleted account's own token
    emit(args, reply, f"deleted the account {email} and all its data")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from stockalert.entrypoints.run import (  # noqa: PLC0415 - server code only for `run`
        configure_logging,
        install_signal_handlers,
        run,
    )

    configure_logging()
    stop = threading.Event()
    install_signal_handlers(stop)
    run(os.environ, stop)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from stockalert.entrypoints.run import (  # noqa: PLC0415 - server code only for `serve`
        configure_logging,
        install_signal_handlers,
        serve_role,
    )

    configure_logging()
    stop = threading.Event()
    install_signal_handlers(stop)
    serve_role(args.role, os.environ, stop)
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415

    from stockalert.entrypoints.run import upgrade_database  # noqa: PLC0415

    try:
        revision = upgrade_database(os.environ)
    except DBAPIError as err:
        print(f"stockalert db upgrade: database unavailable: {err.orig}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(f"database at revision {revision}")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    # Server-side modules load only for the commands that need them: the client commands
    # start in a fraction of the time.
    from stockalert.containers import Container  # noqa: PLC0415
    from stockalert.entrypoints.settings import embedded_config  # noqa: PLC0415

    container = Container()
    container.config.from_dict(embedded_config(os.environ))
    container.check_dependencies()
    container.bus()
    print("configuration ok")
    return EXIT_OK


def cmd_backtest(args: argparse.Namespace) -> int:
    from stockalert.entrypoints.backtest import describe, run_backtest  # noqa: PLC0415

    result = run_backtest(
        args.prices, args.subscriptions, lambda note: print(describe(note), flush=True)
    )
    print(
        f"backtest cycles={result.cycles} quotes={result.quotes} "
        f"notifications={len(result.notifications)}"
    )
    return EXIT_OK


# ----- parser ----------------------------------------------------------------------------


INT32_MAX = 2**31 - 1


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

    add("run", cmd_run, "run every role in one process (embedded mode) until SIGINT/SIGTERM")
    add("check-config", cmd_check_config, "validate the STOCKALERT_* environment")
    serve = add(
        "serve",
        cmd_serve,
        "run one role as its own process on the shared database (this build: cleaner, "
        "collector; the others arrive with Kafka)",
    )
    serve.add_argument("role", choices=["cleaner", "collector"])
    db = add("db", lambda _: EXIT_USAGE, "database administration")
    db_sub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    upgrade = db_sub.add_parser(
        "upgrade",
        help="migrate STOCKALERT_DB_URL to the newest schema",
        description="Migrate STOCKALERT_DB_URL to the newest schema (Alembic).",
    )
    upgrade.set_defaults(handler=cmd_db_upgrade)
    backtest = add(
        "backtest",
        cmd_backtest,
        "replay PRICES (CSV timestamp,ticker,price) against SUBSCRIPTIONS (CSV email,ticker,"
        "high_value,low_value[,rearm_percent,cooldown_s,remind_every_s]) in memory and print "
        "one line per e-mail",
    )
    backtest.add_argument("prices", type=Path, metavar="PRICES")
    backtest.add_argument("subscriptions", type=Path, metavar="SUBSCRIPTIONS")

    for name, handler, text in (
        ("register", cmd_register, "create an account (then log in)"),
        ("login", cmd_login, "log in and keep the token (0600 file, or set STOCKALERT_TOKEN)"),
    ):
        command = add(name, handler, text)
        command.add_argument("email")
        command.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
    add("logout", cmd_logout, "forget the stored token")

    watch = add("watch", cmd_watch, "create or change the alert thresholds of a ticker")
    watch.add_argument("ticker")
    watch.add_argument("--high", type=_finite, help="alert when the price goes above this")
    watch.add_argument("--low", type=_finite, help="alert when the price goes below this")
    watch.add_argument("--rearm-percent", type=_finite, help="re-arm band in percent (1)")
    watch.add_argument("--cooldown", type=_finite, help="seconds a fired side stays fired (0=off)")
    watch.add_argument("--remind-every", type=_finite, help="reminder period in s (0=off)")
    watch.add_argument("--clear-high", action="store_true", help="remove the high threshold")
    watch.add_argument("--clear-low", action="store_true", help="remove the low threshold")

    unwatch = add("unwatch", cmd_unwatch, "stop watching a ticker")
    unwatch.add_argument("ticker")
    latest = add("latest", cmd_latest, "newest price of a watched ticker")
    latest.add_argument("ticker", nargs="?", help="default: your only ticker")
    average = add("average", cmd_average, "mean of the newest N prices of a watched ticker")
    average.add_argument("ticker", nargs="?", help="default: your only ticker")
    average.add_argument("--count", type=_int32, required=True, help="how many quotes (>= 1)")
    add("subscriptions", cmd_subscriptions, "your tickers, thresholds and alert states")
    notifications = add("notifications", cmd_notifications, "your alert history, newest first")
    notifications.add_argument("--limit", type=_int32, default=0, help="at most this many")
    delete = add("delete-account", cmd_delete_account, "delete your account and all its data")
    delete.add_argument("--email", help="the account (default: the logged-in one)")
    delete.add_argument("--password-stdin", action="store_true", help="read password from stdin")
    return parser


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


if __name__ == "__main__":
    sys.exit(main())

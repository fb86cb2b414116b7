"""The client subcommands: each one gRPC call (or two) to a running server, a human line or
JSON back."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from stockalert.adapters.grpc.client import ApiError, StockAlertClient
from stockalert.api.v1 import stockalert_pb2 as pb
from stockalert.entrypoints.cli.token_file import forget_token, load_token, save_token

# How the client waits between its retries (UNAVAILABLE, DEADLINE_EXCEEDED): a module setting,
# so that a test can run the CLI's real retries without waiting them out.
retry_sleep: Callable[[float], None] = time.sleep


class UsageError(Exception):
    """The command line is wrong in a way argparse cannot see."""


def read_password(
    args: argparse.Namespace, prompt: str = "Password: ", *, confirm: bool = False
) -> str:
    """From stdin (--password-stdin, first line) or an interactive prompt (asked twice when
    `confirm`, so that a typo does not become the password)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to prompt for the password; use --password-stdin")
    password = getpass.getpass(prompt)
    if confirm and getpass.getpass("Repeat the password: ") != password:
        raise UsageError("the two passwords differ; nothing was changed")
    return password


def client_for(args: argparse.Namespace, token: str | None = None) -> StockAlertClient:
    """A client of the configured addresses, with the stored token unless given one."""
    stored = load_token()
    return StockAlertClient(
        args.addr,
        args.query_addr or args.addr,
        token if token is not None else stored.get("token"),
        timeout_s=args.timeout,
        sleep=retry_sleep,
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


def describe_notification(n: pb.Notification) -> str:
    """One line per notification."""
    return (
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
    )


def cmd_register(args: argparse.Namespace) -> int:
    password = read_password(args, confirm=True)
    with client_for(args, token="") as client:
        reply = client.register(args.email, password)
        login = client.login(args.email, password)
    save_token(login.token, login.expires_at.ToDatetime(UTC), args.email)
    emit(args, reply, f"registered {args.email} (user {reply.user_id}); logged in")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    password = read_password(args)
    with client_for(args, token="") as client:
        reply = client.login(args.email, password)
    expires = reply.expires_at.ToDatetime(UTC)
    path = save_token(reply.token, expires, args.email)
    emit(args, reply, f"logged in as {args.email} until {expires.isoformat()} (token in {path})")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    """End the user's sessions on the server (every token of theirs, on every machine), then
    forget the local token; the local token goes even when the server cannot be told."""
    try:
        if load_token().get("token"):
            with client_for(args) as client:
                client.logout()
    except ApiError as err:
        if err.code != grpc.StatusCode.UNAUTHENTICATED:  # refused already: nothing to end
            raise
    finally:
        forget_token()
    print(json.dumps({"logged_out": True}) if args.json else "logged out everywhere")
    return 0


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
    return 0


def cmd_unwatch(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        reply = client.remove_subscription(args.ticker)
    emit(args, reply, f"no longer watching {args.ticker.upper()}")
    return 0


def cmd_latest(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        reply = client.latest(args.ticker or "")
    quoted = reply.quoted_at.ToDatetime(UTC).isoformat()
    emit(args, reply, f"{reply.ticker} {reply.value:.4f} at {quoted}")
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        reply = client.average(args.count, args.ticker or "")
    emit(
        args,
        reply,
        f"{reply.ticker} average of the newest {reply.samples} quotes: {reply.average_value:.4f}",
    )
    return 0


def cmd_subscriptions(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        reply = client.subscriptions()
    lines = [describe_subscription(s) for s in reply.subscriptions] or ["no subscriptions"]
    emit(args, reply, "\n".join(lines))
    return 0


def cmd_notifications(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        reply = client.notifications(args.limit)
    lines = [describe_notification(n) for n in reply.notifications] or ["no notifications"]
    emit(args, reply, "\n".join(lines))
    return 0


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
        forget_token()  # only the deleted account's own token
    emit(args, reply, f"deleted the account {email} and all its data")
    return 0

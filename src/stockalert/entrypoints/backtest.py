"""`stockalert backtest`: replay a price file against subscriptions, print each alert.

It runs the real message bus, handlers, alert engine and notification ledger over the
in-memory adapters, so what it prints is what the running system would e-mail.
"""

from __future__ import annotations

import csv
import secrets
from collections.abc import Callable
from pathlib import Path

import attrs

from stockalert.adapters.memory.fakes import InsecureFastHasher, ManualClock, MemoryMailer
from stockalert.adapters.replay import ReplayFileError, parse_timestamp, read_price_file
from stockalert.containers import Embedded, in_memory_config
from stockalert.domain.commands import RecordQuotes, RegisterUser, SetSubscription
from stockalert.domain.errors import DomainError
from stockalert.domain.model import Notification
from stockalert.domain.views import UserRegistered

SUBSCRIPTION_COLUMNS = ("email", "ticker", "high_value", "low_value")
OPTIONAL_COLUMNS = ("rearm_percent", "cooldown_s", "remind_every_s")


@attrs.frozen
class BacktestResult:
    """What a backtest did."""

    cycles: int
    quotes: int
    notifications: list[Notification]


def _number(row: dict[str, str], column: str) -> float | None:
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise DomainError(f"{column}: {text!r} is not a number", field=column) from None


def _register_subscriptions(container: Embedded, path: Path) -> int:
    bus = container.bus()
    users: dict[str, str] = {}
    count = 0
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [f.strip() for f in reader.fieldnames or []]
        missing = [c for c in SUBSCRIPTION_COLUMNS if c not in header]
        if missing:
            raise ReplayFileError(f"{path}:1: header lacks {', '.join(missing)}")
        for row in reader:
            line = reader.line_num
            try:
                email = (row.get("email") or "").strip().lower()
                if email not in users:
                    reply = bus.handle(
                        RegisterUser(f"backtest-user-{line}", email, secrets.token_urlsafe(16))
                    )
                    assert isinstance(reply, UserRegistered)
                    users[email] = reply.user_id
                bus.handle(
                    SetSubscription(
                        request_id=f"backtest-subscription-{line}",
                        user_id=users[email],
                        ticker=row.get("ticker") or "",
                        high_value=_number(row, "high_value"),
                        low_value=_number(row, "low_value"),
                        rearm_percent=_number(row, "rearm_percent"),
                        cooldown_s=_number(row, "cooldown_s"),
                        remind_every_s=_number(row, "remind_every_s"),
                    )
                )
            except DomainError as err:
                raise ReplayFileError(f"{path}:{line}: {err.message}") from None
            count += 1
    return count


def run_backtest(
    prices: Path,
    subscriptions: Path,
    on_notification: Callable[[Notification], None] = lambda _: None,
) -> BacktestResult:
    """Replay `prices` against `subscriptions`; call `on_notification` for each e-mail sent."""
    if not subscriptions.is_file():
        raise ReplayFileError(f"{subscriptions}: no such file")
    groups = read_price_file(prices)
    clock = ManualClock(groups[0][0] if groups else parse_timestamp("2026-01-01T00:00:00Z"))
    mailer = MemoryMailer()
    container = Embedded()
    container.config.from_dict(in_memory_config())
    container.core.clock.override(clock)
    container.delivery.mailer.override(mailer)
    # The backtest's accounts live in memory for one run, with throwaway passwords.
    container.accounts.hasher.override(InsecureFastHasher())
    _register_subscriptions(container, subscriptions)
    bus = container.bus()
    quotes = 0
    for at, group in groups:
        clock.advance((at - clock.now()).total_seconds())
        before = len(mailer.sent)
        bus.handle(RecordQuotes(tuple(group)))
        quotes += len(group)
        for notification in mailer.sent[before:]:
            on_notification(notification)
    return BacktestResult(len(groups), quotes, list(mailer.sent))


def describe(notification: Notification) -> str:
    """One log-friendly line per alert."""
    return (
        f"{notification.quoted_at.isoformat()} ALERT to={notification.email} "
        f"ticker={notification.ticker} side={notification.side} "
        f"price={notification.price:.2f} threshold={notification.threshold:.2f} "
        f"kind={notification.kind} id={notification.notification_id}"
    )

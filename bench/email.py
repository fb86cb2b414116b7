# ruff: noqa: A005 - the module name bench.email is the requested entry point
"""Benchmark: alert e-mails through SmtpMailer (one reused connection) versus one per message.

    python -m bench.email [--messages N]

Offline: the server is an aiosmtpd sink on 127.0.0.1 that answers "250 OK" to everything
(tests/smtp_server.py), run in a child process so that it has a CPU of its own.

* reuse: what the notifier does: `SmtpMailer.send_many` over batches of
  `RetryPendingNotifications().batch` notifications; the messages are built in the mailer's
  worker process while its one connection sends (MAIL/RCPT/DATA); the median of 3 runs;
* per message: the original way: for every notification, build_message, then connect,
  EHLO, send_message, QUIT with smtplib directly, in this process.

The same notifications are sent both ways. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import smtplib
import statistics
import time
from datetime import UTC, datetime

from tests.smtp_server import HOST, sink_process

from stockalert.adapters.mail.message import build_message
from stockalert.adapters.mail.smtp import SmtpMailer, SmtpSettings
from stockalert.domain.commands import RetryPendingNotifications
from stockalert.domain.model import Email, Notification, NotificationKind, Side, Ticker

QUOTED_AT = datetime(2026, 1, 2, 15, 30, tzinfo=UTC)
RUNS = 3
TICKERS = ("AAPL", "MSFT", "GOOG", "AMZN", "^GSPC", "BRK-B", "EURUSD=X")


def notifications(count: int) -> list[Notification]:
    """`count` distinct alerts to distinct users."""
    result = []
    for n in range(count):
        side = Side.HIGH if n % 2 == 0 else Side.LOW
        result.append(
            Notification(
                notification_id=f"sub{n}:{side.value}:1",
                subscription_id=f"sub{n}",
                user_id=f"u{n}",
                email=Email(f"user{n}@example.com"),
                ticker=Ticker(TICKERS[n % len(TICKERS)]),
                side=side,
                kind=NotificationKind.CROSSING,
                price=100.0 + n % 50,
                threshold=99.5 + n % 50,
                quoted_at=QUOTED_AT,
                episode=1,
            )
        )
    return result


def run_reuse(mailer: SmtpMailer, batch: list[Notification]) -> float:
    """Seconds to send `batch` through the mailer, in the notifier's batch size."""
    size = RetryPendingNotifications().batch
    start = time.perf_counter()
    for first in range(0, len(batch), size):
        for outcome in mailer.send_many(batch[first : first + size]):
            if outcome is not None:
                raise SystemExit(f"not delivered: {outcome}")
    return time.perf_counter() - start


def run_per_message(port: int, batch: list[Notification], sender: str) -> float:
    """Seconds to send `batch` the original way: a new SMTP session per message."""
    start = time.perf_counter()
    for notification in batch:
        message = build_message(notification, sender)
        connection = smtplib.SMTP(HOST, port, timeout=10.0)
        try:
            connection.ehlo()
            connection.send_message(message)
        finally:
            connection.quit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    count: int = args.messages
    batch = notifications(count)
    sender = SmtpSettings(HOST).sender

    with sink_process() as sink:
        mailer = SmtpMailer(SmtpSettings(HOST, sink.port, security="none", timeout_s=10.0))
        try:
            run_reuse(mailer, notifications(200))  # warm-up: worker process, templates, socket
            before = sink.accepted
            reuse_s = statistics.median(run_reuse(mailer, batch) for _ in range(RUNS))
        finally:
            mailer.close()
        connections = mailer.connections_opened
        per_message_s = run_per_message(sink.port, batch, sender)
        accepted = sink.accepted - before
    if accepted != (RUNS + 1) * count:
        raise SystemExit(f"the sink accepted {accepted} messages, expected {(RUNS + 1) * count}")

    reuse_rate = count / reuse_s
    per_message_rate = count / per_message_s
    print(
        f"reuse:       {count} e-mails in {reuse_s:.2f} s (median of {RUNS}) over "
        f"{connections} connection(s) "
        f"= {reuse_rate:.1f}/s"
    )
    print(
        f"per message: {count} e-mails in {per_message_s:.2f} s over {count} connections "
        f"= {per_message_rate:.1f}/s"
    )
    print(
        f"email messages={count} reuse_per_s={reuse_rate:.1f} "
        f"per_message_per_s={per_message_rate:.1f} speedup={reuse_rate / per_message_rate:.1f}"
    )


if __name__ == "__main__":
    main()

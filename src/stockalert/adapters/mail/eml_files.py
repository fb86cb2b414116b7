"""The `.eml` outbox: the mailer of the embedded run when no SMTP host is configured."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from stockalert.adapters.files import private_dir
from stockalert.adapters.mail import DEFAULT_SENDER
from stockalert.adapters.mail.message import build_message
from stockalert.domain.model import Notification
from stockalert.domain.ports import (
    MailOutcome,
    MailPermanentError,
    MailTemporaryError,
    send_each,
)


def file_name(notification_id: str) -> str:
    """One file per notification id, safe on every filesystem."""
    return notification_id.replace(":", "_") + ".eml"


class OutboxMailer:
    """Mailer port: writes each notification as `<id>.eml`, atomically, at most once."""

    def __init__(self, directory: Path, sender: str = DEFAULT_SENDER) -> None:
        self._directory = directory
        self._sender = sender

    @property
    def directory(self) -> Path:
        return self._directory

    def send_many(self, notifications: Sequence[Notification]) -> Iterator[MailOutcome]:
        return send_each(self.send, notifications)

    def send(self, notification: Notification) -> None:
        target = self._directory / file_name(notification.notification_id)
        if target.exists():
            return  # delivered before (a redelivered event): one file per notification
        try:
            data = build_message(notification, self._sender).as_bytes()
        except ValueError as err:  # e.g. a header value with a line break: never writable
            raise MailPermanentError(f"cannot build the message: {err}") from err
        try:
            private_dir(self._directory)  # e-mail addresses and alerts: 0700
            fd, temp = tempfile.mkstemp(dir=self._directory, prefix=".tmp-", suffix=".eml")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, target)  # readers never see half a message
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as err:
            # A full disk or a permission problem may be fixed: keep the notification pending.
            raise MailTemporaryError(f"cannot write {target}: {err.strerror or err}") from err

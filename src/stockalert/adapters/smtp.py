"""SMTP delivery: one connection reused across messages, reconnected when it drops.

Outcomes map onto the Mailer port: a 5xx answer is permanent (MailPermanentError: recorded
as FAILED, never retried); 4xx answers, dropped connections, refused connections and
authentication failures (a configuration problem that someone will fix) are temporary: a
few quick retries with exponential backoff and jitter, then MailTemporaryError so the
notification stays PENDING and is retried later. Nothing is ever dropped.
"""

from __future__ import annotations

import email.utils
import logging
import random
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from contextlib import suppress

import attrs

from stockalert.adapters.email_message import DEFAULT_SENDER, build_message, to_bytes
from stockalert.domain.model import Notification
from stockalert.domain.ports import MailPermanentError, MailTemporaryError

log = logging.getLogger(__name__)

SECURITY_MODES = ("starttls", "tls", "none")


@attrs.frozen
class SmtpSettings:
    """Where and how to send (from STOCKALERT_SMTP_*)."""

    host: str
    port: int = 587
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    sender: str = DEFAULT_SENDER
    security: str = "starttls"  # "starttls", "tls" (implicit TLS, port 465) or "none"
    timeout_s: float = 10.0

    def __attrs_post_init__(self) -> None:
        if self.security not in SECURITY_MODES:
            raise ValueError(f"security must be one of {', '.join(SECURITY_MODES)}")
        if any(c in self.sender for c in "\r\n"):
            raise ValueError("sender must not contain line breaks")
        if not self.envelope_sender.isascii() or "@" not in self.envelope_sender:
            raise ValueError(f"sender {self.sender!r} has no ASCII e-mail address")

    @property
    def envelope_sender(self) -> str:
        """The bare address of `sender` (MAIL FROM)."""
        return email.utils.parseaddr(self.sender)[1]


class SmtpMailer:
    """Mailer port over SMTP; thread-safe (one connection, one message at a time)."""

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        attempts: int = 3,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._settings = settings
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._jitter = jitter
        self._tls = tls_context
        self._connection: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        self.connections_opened = 0

    def send(self, notification: Notification) -> None:
        try:
            # Flattened once here: smtplib.send_message would copy, re-parse the addresses
            # and flatten again with a policy cloned per call.
            data = to_bytes(build_message(notification, self._settings.sender))
        except ValueError as err:  # e.g. a header value with a line break: never sendable
            raise MailPermanentError(f"cannot build the message: {err}") from err
        with self._lock:
            self._send(data, notification)

    def close(self) -> None:
        """QUIT and close the connection (shutdown)."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                try:
                    connection.quit()
                except (smtplib.SMTPException, OSError):
                    connection.close()

    def _send(self, data: bytes, notification: Notification) -> None:
        reason = "not attempted"
        recipients = [notification.email.value]
        for attempt in range(1, self._attempts + 1):
            try:
                self._connect().sendmail(self._settings.envelope_sender, recipients, data)
                return
            except smtplib.SMTPRecipientsRefused as err:
                codes = [code for code, _ in err.recipients.values()]
                text = "; ".join(f"{code} {msg!r}" for code, msg in err.recipients.values())
                if any(500 <= code < 600 for code in codes):
                    raise MailPermanentError(f"recipient refused: {text}") from err
                reason = f"recipient deferred: {text}"
            except smtplib.SMTPAuthenticationError as err:
                self._drop()
                # Wrong credentials are fixed by an operator; the mail must wait, not vanish.
                reason = f"authentication failed: {err.smtp_code} {_text(err.smtp_error)}"
            except smtplib.SMTPResponseException as err:
                if 500 <= err.smtp_code < 600:
                    raise MailPermanentError(f"{err.smtp_code} {_text(err.smtp_error)}") from err
                if err.smtp_code == 421:
                    self._drop()  # the server is closing the connection
                reason = f"{err.smtp_code} {_text(err.smtp_error)}"
            except (smtplib.SMTPException, OSError) as err:
                self._drop()
                reason = f"{type(err).__name__}: {err}"
            if attempt < self._attempts:
                delay = self._backoff_s * 2 ** (attempt - 1) * (0.5 + self._jitter())
                log.warning(
                    "event=smtp_retry notification_id=%s attempt=%d delay_s=%.2f reason=%r",
                    notification.notification_id,
                    attempt,
                    delay,
                    reason,
                )
                self._sleep(delay)
        raise MailTemporaryError(reason)

    def _connect(self) -> smtplib.SMTP:
        if self._connection is not None:
            return self._connection
        s = self._settings
        connection: smtplib.SMTP
        if s.security == "tls":
            connection = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout_s, context=self._tls_context()
            )
        else:
            connection = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
        try:
            connection.ehlo()
            if s.security == "starttls":
                connection.starttls(context=self._tls_context())
                connection.ehlo()
            if s.user:
                connection.login(s.user, s.password or "")
        except BaseException:
            connection.close()
            raise
        self.connections_opened += 1
        log.info("event=smtp_connected host=%s port=%d security=%s", s.host, s.port, s.security)
        self._connection = connection
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        return self._tls or ssl.create_default_context()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with suppress(OSError):
                connection.close()


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value

"""SMTP delivery: one connection reused across messages, reconnected when it drops.

Outcomes map onto the Mailer port:
* a 5xx answer is permanent (MailPermanentError: recorded as FAILED, never retried);
* 4xx answers, dropped and refused connections are temporary: a few quick retries with
  exponential backoff and jitter, then MailTemporaryError, so the notification stays PENDING
  and is retried later (the domain's RetryPolicy says when);
* configuration problems (wrong credentials, 530 "STARTTLS / login required", no AUTH
  offered, an untrusted certificate) are temporary too, without quick retries: the mail
  waits until an operator fixes the settings. Nothing is ever dropped.

When the server is unreachable or misconfigured, the mailer pauses (a circuit breaker):
for `pause_s` further e-mails fail at once with MailNotAttempted instead of each waiting
through its own retries, then one trial goes through. An alert storm during an outage so
costs one round of retries, not one per alert.

`send_many` overlaps building the messages (the stdlib `email` package, about 1 ms of CPU
each) with the SMTP exchange: batches are built ahead in a worker process (`build_processes`)
while the one connection sends, and each outcome is yielded as soon as the server answered.
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import multiprocessing
import os
import random
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress

import attrs

from stockalert.adapters.breaker import CircuitBreaker
from stockalert.adapters.mail import DEFAULT_SENDER
from stockalert.adapters.mail.message import build_message, to_bytes
from stockalert.domain.model import Notification
from stockalert.domain.ports import (
    MailNotAttempted,
    MailOutcome,
    MailPermanentError,
    MailTemporaryError,
)
from stockalert.faults import crash_point

log = logging.getLogger(__name__)

SECURITY_MODES = ("starttls", "tls", "none")


def password_in_clear(host: str, security: str, user: str | None) -> bool:
    """Would a login cross the network unencrypted? (Plain logins stay on the machine only.)"""
    return bool(user) and security == "none" and host not in ("localhost", "127.0.0.1", "::1")


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
    pause_s: float = 30.0  # after the server was unreachable: fail fast this long
    build_processes: int = 1  # worker processes building messages for send_many; 0: inline
    connections: int = 1  # connections sending side by side (`SmtpMailer.lanes`)

    def __attrs_post_init__(self) -> None:
        if self.security not in SECURITY_MODES:
            raise ValueError(f"security must be one of {', '.join(SECURITY_MODES)}")
        if any(c in self.sender for c in "\r\n"):
            raise ValueError("sender must not contain line breaks")
        if not self.envelope_sender.isascii() or "@" not in self.envelope_sender:
            raise ValueError(f"sender {self.sender!r} has no ASCII e-mail address")
        if password_in_clear(self.host, self.security, self.user):
            raise ValueError("a login needs TLS: the password would cross the network in clear")
        if self.pause_s < 0 or self.build_processes < 0:
            raise ValueError("pause_s and build_processes must not be negative")
        if self.connections < 1:
            raise ValueError("connections must be at least 1")

    @property
    def envelope_sender(self) -> str:
        """The bare address of `sender` (MAIL FROM)."""
        return email.utils.parseaddr(self.sender)[1]


class _Unavailable(MailTemporaryError):
    """The server could not be reached or talked to (not just one message deferred)."""


# How a kept connection fails when the server closed it meanwhile (idle timeout, restart).
_DROPPED = (smtplib.SMTPServerDisconnected, ConnectionResetError, BrokenPipeError)
# Below this many messages a batch is built inline: the worker's round trip is not worth it.
_POOL_MIN_BATCH = 4
# How often a build worker checks that the process that started it is still there.
_PARENT_CHECK_S = 1.0
# Messages per round trip to the worker: fewer trips, but the first message waits for all.
# 16: the parent's share (pickling, futures) falls from ~220 to ~75 µs a message (4: ~220),
# and the first of a batch waits for 16 builds (~8 ms).
_BUILD_CHUNK = 16


def wire_message(notification: Notification, sender: str) -> bytes | MailPermanentError:
    """The message as sent, or why it can never be (a worker process runs this)."""
    try:
        return to_bytes(build_message(notification, sender))
    except ValueError as err:  # e.g. a header value with a line break: never sendable
        return MailPermanentError(f"cannot build the message: {err}")


def _exit_with_parent(parent_pid: int) -> None:
    """Build worker start-up: end this worker when its parent is gone, even a parent killed
    with SIGKILL (which cannot shut the pool down), instead of living on as an orphan."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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
        monotonic: Callable[[], float] = time.monotonic,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._settings = settings
        self._envelope_sender = settings.envelope_sender  # parsed once, not per message
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._jitter = jitter
        self._tls = tls_context
        self._connection: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        self._breaker = CircuitBreaker(
            monotonic,
            name="smtp",
            failure_threshold=1,
            recovery_timeout_s=settings.pause_s,
            slow_call_s=float("inf"),
        )
        self._pool: ProcessPoolExecutor | None = None
        self._unavailable = ""
        self.connections_opened = 0
        self._builder = self  # whose build worker this mailer uses
        self._siblings: list[SmtpMailer] = []
        self._options = {
            "attempts": attempts,
            "backoff_s": backoff_s,
            "sleep": sleep,
            "jitter": jitter,
            "monotonic": monotonic,
            "tls_context": tls_context,
        }

    def lanes(self) -> list[SmtpMailer]:
        """`settings.connections` mailers that send side by side, each over a connection of
        its own: this one and siblings sharing its breaker (an unreachable server pauses them
        all) and its build worker; closed with it."""
        while len(self._siblings) < self._settings.connections - 1:
            sibling = SmtpMailer(self._settings, **self._options)  # type: ignore[arg-type]
            sibling._breaker = self._breaker
            sibling._builder = self
            self._siblings.append(sibling)
        return [self, *self._siblings]

    def send(self, notification: Notification) -> None:
        """Deliver one message or raise MailTemporaryError / MailPermanentError."""
        outcome = next(self.send_many([notification]))
        if outcome is not None:
            raise outcome

    def send_many(
        self, notifications: Sequence[Notification]
    ) -> Generator[MailOutcome, None, None]:
        built = self._built(notifications)
        try:
            for notification, data in zip(notifications, built, strict=True):
                if isinstance(data, MailPermanentError):
                    yield data
                    continue
                with self._lock:
                    outcome = self._deliver(data, notification)
                yield outcome
        finally:
            built.close()  # stops building what will not be sent

    def close(self) -> None:
        """QUIT and close the connection (and the siblings'), stop the build worker."""
        for sibling in self._siblings:
            sibling.close()
        with self._lock:
            connection, self._connection = self._connection, None
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if connection is not None:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()

    def _built(
        self, notifications: Sequence[Notification]
    ) -> Generator[bytes | MailPermanentError, None, None]:
        sender = self._settings.sender
        done = 0
        pool = self._pool_for(len(notifications))
        if pool is not None:
            results = None
            try:
                results = pool.map(
                    wire_message, notifications, itertools.repeat(sender), chunksize=_BUILD_CHUNK
                )
                for data in results:
                    done += 1
                    yield data
                return
            except BrokenProcessPool:  # the worker died (killed, out of memory)
                log.warning("event=smtp_build_worker_lost action=build_inline")
                with self._lock:
                    if self._pool is pool:
                        self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            finally:
                if results is not None:
                    results.close()  # type: ignore[attr-defined]  # a generator: cancels the rest
        for notification in notifications[done:]:
            yield wire_message(notification, sender)

    def _pool_for(self, count: int) -> ProcessPoolExecutor | None:
        if self._builder is not self:
            return self._builder._pool_for(count)
        workers = self._settings.build_processes
        if workers == 0 or count < _POOL_MIN_BATCH:
            return None
        with self._lock:
            if self._pool is None:
                # spawn, not fork: the parent has threads (gRPC, Kafka) that fork would copy.
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    max_workers=workers,
                    mp_context=context,
                    initializer=_exit_with_parent,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def _deliver(self, data: bytes, notification: Notification) -> MailOutcome:
        """One message through the breaker; the caller holds the lock."""
        if not self._breaker.try_acquire():
            return MailNotAttempted(f"not attempted, SMTP server unavailable: {self._unavailable}")
        try:
            self._send(data, notification)
        except _Unavailable as err:
            self._unavailable = str(err)
            self._breaker.record(success=False, duration_s=0.0)
            return err
        except (MailTemporaryError, MailPermanentError) as err:
            self._breaker.record(success=True, duration_s=0.0)  # the server answered
            return err
        self._breaker.record(success=True, duration_s=0.0)
        return None

    def _send(self, data: bytes, notification: Notification) -> None:
        reason = "not attempted"
        recipients = [notification.email.value]
        attempt, reconnected = 0, False
        while attempt < self._attempts:
            attempt += 1
            unavailable, reused = True, self._connection is not None
            try:
                self._connect().sendmail(self._envelope_sender, recipients, data)
                crash_point("smtp.accepted")
                return
            except smtplib.SMTPRecipientsRefused as err:
                codes = [code for code, _ in err.recipients.values()]
                text = "; ".join(f"{code} {msg!r}" for code, msg in err.recipients.values())
                if any(500 <= code < 600 for code in codes):
                    raise MailPermanentError(f"recipient refused: {text}") from err
                reason, unavailable = f"recipient deferred: {text}", False
            except smtplib.SMTPAuthenticationError as err:
                self._drop()
                # Wrong credentials: trying again at once cannot help (and may lock the
                # account); the mailer pauses until an operator fixes them. Mail waits.
                text = f"authentication failed: {err.smtp_code} {_text(err.smtp_error)}"
                raise _Unavailable(text) from err
            except smtplib.SMTPResponseException as err:
                if err.smtp_code == 530:  # STARTTLS or a login required: our configuration
                    self._drop()
                    text = f"{err.smtp_code} {_text(err.smtp_error)} (check STOCKALERT_SMTP_*)"
                    raise _Unavailable(text) from err
                if 500 <= err.smtp_code < 600:
                    raise MailPermanentError(f"{err.smtp_code} {_text(err.smtp_error)}") from err
                if err.smtp_code == 421:
                    self._drop()  # the server is closing the connection
                unavailable = err.smtp_code == 421
                reason = f"{err.smtp_code} {_text(err.smtp_error)}"
            except (smtplib.SMTPNotSupportedError, ssl.SSLCertVerificationError) as err:
                # No AUTH offered, or a certificate we do not trust: configuration, not luck.
                self._drop()
                raise _Unavailable(f"{type(err).__name__}: {err}") from err
            except (smtplib.SMTPException, OSError) as err:
                self._drop()
                reason = f"{type(err).__name__}: {err}"
                if reused and not reconnected and isinstance(err, _DROPPED):
                    # Most likely closed by the server while idle: reconnect at once, once.
                    log.info("event=smtp_reconnect reason=%r", reason)
                    attempt, reconnected = attempt - 1, True
                    continue
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
        raise (_Unavailable if unavailable else MailTemporaryError)(reason)

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

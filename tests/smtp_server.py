"""A real SMTP server on 127.0.0.1 (aiosmtpd) for the SMTP tests and the e-mail benchmark.

`SmtpServer` records every accepted message (envelope and parsed content), counts the
connections and QUIT commands it saw, and can be scripted to answer the next RCPT or DATA
commands with an error ("421 4.3.0 try later", "550 5.1.1 no such mailbox", ...). It can be
stopped and started again on the same port, to play a server that is down for a while.
Optionally it speaks TLS (STARTTLS required, or implicit TLS) and requires a login
(`Authenticator`: one user and password, logins counted).
`sink_process` runs a server that only answers "250 OK" in a child process (benchmark).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import multiprocessing
import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import closing, contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import IO, Any

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOST = "127.0.0.1"
SESSION_TIMEOUT_S = 30.0  # an idle client connection is closed by the server after this
SINK_LIFETIME_S = 300.0  # a sink process ends by itself after this, whatever happens


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@attrs.frozen
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    tls: str | None = None  # the TLS version the message came over ("TLSv1.3"); None: clear


def _tls_version(server: SMTP) -> str | None:
    """The TLS version of the session (after STARTTLS or implicit), None if unencrypted."""
    transport = server.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return ssl_object.version() if ssl_object is not None else None


class RecordingHandler:
    """aiosmtpd handler: stores messages, counts QUITs, answers scripted errors first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[Received] = []
        self.quits = 0
        self._script: dict[str, deque[str]] = {"RCPT": deque(), "DATA": deque()}

    def answer_next(self, command: str, *responses: str) -> None:
        """Answer the next len(responses) `command`s ("RCPT" or "DATA") with these, in order."""
        with self._lock:
            self._script[command].extend(responses)

    def _scripted(self, command: str) -> str | None:
        with self._lock:
            queue = self._script[command]
            return queue.popleft() if queue else None

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        scripted = self._scripted("RCPT")
        if scripted is not None:
            return scripted
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Any, envelope: Any
    ) -> str:
        scripted = self._scripted("DATA")
        if scripted is not None:
            return scripted
        raw = bytes(envelope.original_content or envelope.content)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        received = Received(
            envelope.mail_from, tuple(envelope.rcpt_tos), parsed, raw, _tls_version(server)
        )
        with self._lock:
            self.messages.append(received)
        return "250 OK"

    async def handle_QUIT(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Any, envelope: Any
    ) -> str:
        with self._lock:
            self.quits += 1
        return "221 Bye"


class Authenticator:
    """aiosmtpd authenticator: accepts one user and password, counts the AUTH attempts."""

    def __init__(self, user: str, password: str) -> None:
        self._expected = LoginPassword(user.encode(), password.encode())
        self._lock = threading.Lock()
        self.succeeded = 0
        self.failed = 0

    def __call__(
        self, server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        success = auth_data == self._expected
        with self._lock:
            if success:
                self.succeeded += 1
            else:
                self.failed += 1
        # handled=False: aiosmtpd answers a failure with "535 5.7.8 ... credentials invalid"
        return AuthResult(success=success, handled=False)


class _CountingController(Controller):
    """Controller whose SMTP sessions report each new connection."""

    def __init__(self, owner: SmtpServer, handler: object, port: int, **options: Any) -> None:
        super().__init__(handler, hostname=HOST, port=port, ready_timeout=5.0, **options)
        self._owner = owner

    def factory(self) -> SMTP:
        owner = self._owner

        class CountingSMTP(SMTP):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                if self.transport is None:  # not the same connection again after STARTTLS
                    owner.connection_made()
                super().connection_made(transport)

        return CountingSMTP(self.handler, timeout=SESSION_TIMEOUT_S, **self.SMTP_kwargs)


class SmtpServer:
    """A recording SMTP server on 127.0.0.1 that can go down and come back on its port.

    With `tls_context` (a server context) it requires STARTTLS before anything but EHLO,
    NOOP and QUIT, or with `implicit_tls` too it speaks TLS from the first byte. With
    `login` (user, password) it offers AUTH over TLS only and counts the logins; it does not
    require one before MAIL. Every (re)start uses the same options.
    """

    def __init__(
        self,
        handler: RecordingHandler | None = None,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        login: tuple[str, str] | None = None,
    ) -> None:
        if implicit_tls and tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        self.handler = handler or RecordingHandler()
        self.authenticator = Authenticator(*login) if login is not None else None
        options: dict[str, Any] = {}
        if implicit_tls:
            options["ssl_context"] = tls_context
        elif tls_context is not None:
            options.update(tls_context=tls_context, require_starttls=True)
        if self.authenticator is not None:
            # aiosmtpd 1.4 only knows STARTTLS as TLS: with implicit TLS, auth_require_tls
            # would refuse every AUTH (538; aio-libs/aiosmtpd#281). That session is TLS anyway.
            options.update(authenticator=self.authenticator, auth_require_tls=not implicit_tls)
        self._options = options
        self.port = free_port()
        self._controller: _CountingController | None = None
        self._lock = threading.Lock()
        self._connections = 0
        self._ignore = 0

    def connection_made(self) -> None:
        with self._lock:
            if self._ignore:
                self._ignore -= 1  # the controller's own readiness probe
            else:
                self._connections += 1

    @property
    def connections(self) -> int:
        """Client connections accepted (the controller's readiness probes not counted; with
        implicit TLS only those whose TLS handshake succeeded)."""
        with self._lock:
            return self._connections

    @property
    def logins(self) -> int:
        """Successful AUTHs (0 without `login`)."""
        auth = self.authenticator
        return 0 if auth is None else auth.succeeded

    @property
    def failed_logins(self) -> int:
        """AUTHs refused for a wrong user or password (0 without `login`)."""
        auth = self.authenticator
        return 0 if auth is None else auth.failed

    @property
    def messages(self) -> list[Received]:
        with self.handler._lock:
            return list(self.handler.messages)

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Listen on `self.port` (the same port on every start)."""
        assert self._controller is None, "already running"
        with self._lock:
            self._ignore += 1
        controller = _CountingController(self, self.handler, self.port, **self._options)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening and close every open session (clients see a dropped connection)."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----- a "250 OK" sink in a child process (benchmark) -------------------------------------


_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


class SinkHandler:
    """Accepts everything and counts the messages; with a `record` file, appends a line
    "ACCEPTED_AT MESSAGE_ID" per message (the wall-clock time of its "250")."""

    def __init__(self, counter: Any, record: IO[str] | None = None) -> None:
        self._counter = counter
        self._record = record

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Any, envelope: Any
    ) -> str:
        if self._record is not None:
            content = envelope.content or b""
            head = content.split(b"\r\n\r\n", 1)[0]
            found = _MESSAGE_ID.search(head)
            message_id = found.group(1).decode() if found else "-"
            self._record.write(f"{time.time():.6f} {message_id}\n")
        with self._counter.get_lock():
            self._counter.value += 1
        return "250 OK"


def _run_sink(
    port: int, counter: Any, ready: Any, stop: Any, record: str | None, lifetime_s: float
) -> None:
    with contextlib.ExitStack() as stack:
        log = None
        if record is not None:
            log = stack.enter_context(open(record, "a", encoding="ascii", buffering=1))
        handler = SinkHandler(counter, log)
        controller = Controller(handler, hostname=HOST, port=port, ready_timeout=5.0)
        controller.start()
        ready.set()
        try:
            stop.wait(lifetime_s)
        finally:
            controller.stop()


@attrs.define
class Sink:
    """A running sink process: where it listens and how many messages it accepted."""

    port: int
    _counter: Any
    pid: int | None = None

    @property
    def accepted(self) -> int:
        return int(self._counter.value)


@contextmanager
def sink_process(record: Path | None = None, lifetime_s: float = SINK_LIFETIME_S) -> Iterator[Sink]:
    """A "250 OK" SMTP server in a child process (its own CPU); stopped on exit, or by itself
    after `lifetime_s`. With `record`, each accepted message's time and Message-ID are
    appended to that file."""
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    counter = ctx.Value("q", 0)
    ready, stop = ctx.Event(), ctx.Event()
    where = None if record is None else str(record)
    process = ctx.Process(
        target=_run_sink, args=(port, counter, ready, stop, where, lifetime_s), daemon=True
    )
    process.start()
    try:
        if not ready.wait(30.0):
            raise RuntimeError("the SMTP sink process did not start")
        yield Sink(port, counter, process.pid)
    finally:
        stop.set()
        process.join(10.0)
        if process.is_alive():
            process.terminate()
            process.join(5.0)


def smtp_environ(server: SmtpServer, pause_s: float) -> dict[str, str]:
    """The STOCKALERT_* variables of a process mailing to `server` (local, in clear), quick
    to retry: the mailer pauses `pause_s` s after finding it unreachable, and a PENDING
    e-mail is tried again after 0.5 s, at most 1 s."""
    return {
        "STOCKALERT_SMTP_HOST": HOST,
        "STOCKALERT_SMTP_PORT": str(server.port),
        "STOCKALERT_SMTP_STARTTLS": "false",
        "STOCKALERT_SMTP_TIMEOUT_S": "5",
        "STOCKALERT_SMTP_PAUSE_S": f"{pause_s:g}",
        "STOCKALERT_MAIL_RETRY_BASE_S": "0.5",
        "STOCKALERT_MAIL_RETRY_MAX_S": "1",
    }


def notification_id_of(message_id: str) -> str:
    """The notification id back from a Message-ID (mail.message.message_id: the id with
    ':' written as '.', then '+' and the correlation id; subscription ids are uuid hex,
    without dots)."""
    local = message_id.strip().removeprefix("<").split("@", 1)[0].split("+", 1)[0]
    return ":".join(local.rsplit(".", 2))

"""SmtpMailer over TLS (STARTTLS and implicit TLS) with a login, against a real SMTP server
(aiosmtpd on 127.0.0.1) whose certificate comes from a throwaway CA (trustme).

The mailer verifies the server's certificate: it never logs in over a connection it has not
verified. No real waiting: the backoff `sleep` records the delays, a ManualClock drives the
mailer's pause.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

from stockalert.adapters.mail.message import message_id
from stockalert.adapters.mail.smtp import SmtpMailer, SmtpSettings
from stockalert.adapters.memory.fakes import ManualClock
from stockalert.domain.ports import MailNotAttempted, MailTemporaryError
from tests.integration.test_smtp import notification
from tests.smtp_server import HOST, SmtpServer

pytestmark = pytest.mark.filterwarnings(
    # aiosmtpd 1.4 itself sets the deprecated attribute on every successful AUTH
    "ignore:Session.login_data is deprecated:DeprecationWarning"
)

USER = "stockalert"
PASSWORD = "correct horse battery staple"
PAUSE_S = 30.0
TLS_VERSIONS = {"TLSv1.2", "TLSv1.3"}
StartServer = Callable[..., SmtpServer]
MakeMailer = Callable[..., SmtpMailer]


# ----- certificates --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The CA that the mailer's TLS context trusts."""
    return trustme.CA()


def server_context(ca: trustme.CA, *hostnames: str) -> ssl.SSLContext:
    """A server context with a certificate for `hostnames`, issued by `ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hostnames).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """The server's certificate: for 127.0.0.1 and localhost, issued by the trusted CA."""
    return server_context(ca, HOST, "localhost")


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A default (verifying) client context that trusts the CA."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# ----- servers and mailers -------------------------------------------------------------------


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Starts an SmtpServer with the given options; every one is stopped after the test."""
    servers: list[SmtpServer] = []

    def start(**options: Any) -> SmtpServer:
        server = SmtpServer(**options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def starttls_server(start_server: StartServer, server_tls: ssl.SSLContext) -> SmtpServer:
    """Requires STARTTLS, then a login (USER, PASSWORD)."""
    return start_server(tls_context=server_tls, login=(USER, PASSWORD))


@pytest.fixture
def implicit_tls_server(start_server: StartServer, server_tls: ssl.SSLContext) -> SmtpServer:
    """TLS from the first byte (SMTPS), then a login (USER, PASSWORD)."""
    return start_server(tls_context=server_tls, implicit_tls=True, login=(USER, PASSWORD))


@pytest.fixture
def make_mailer(sleeps: list[float], clock: ManualClock) -> Iterator[MakeMailer]:
    """Builds SmtpMailers for a server (3 attempts, backoff 0.01 s, jitter fixed at 1x, fake
    sleep and clock); every one is closed after the test."""
    mailers: list[SmtpMailer] = []

    def make(
        server: SmtpServer,
        *,
        security: str,
        tls_context: ssl.SSLContext | None,
        user: str | None = USER,
        password: str | None = PASSWORD,
    ) -> SmtpMailer:
        settings = SmtpSettings(
            HOST,
            server.port,
            user=user,
            password=password,
            security=security,
            timeout_s=5.0,
            pause_s=PAUSE_S,
        )
        mailer = SmtpMailer(
            settings,
            attempts=3,
            backoff_s=0.01,
            sleep=sleeps.append,
            jitter=lambda: 0.5,
            monotonic=lambda: clock.now().timestamp(),
            tls_context=tls_context,
        )
        mailers.append(mailer)
        return mailer

    yield make
    for mailer in mailers:
        mailer.close()


def delivered_ids(server: SmtpServer) -> list[str]:
    return [m.message["Message-ID"] for m in server.messages]


def ids(*numbers: int) -> list[str]:
    return [message_id(notification(n)) for n in numbers]


# ----- delivery over TLS ---------------------------------------------------------------------


def test_starttls_with_a_login_sends_twenty_messages_over_one_encrypted_connection(
    starttls_server: SmtpServer,
    make_mailer: MakeMailer,
    client_tls: ssl.SSLContext,
    sleeps: list[float],
) -> None:
    """20 e-mails over STARTTLS: all arrive in order, encrypted, over one connection with
    one login (not one per message); close() ends the session with QUIT."""
    mailer = make_mailer(starttls_server, security="starttls", tls_context=client_tls)

    for n in range(20):
        mailer.send(notification(n))

    assert delivered_ids(starttls_server) == ids(*range(20))
    assert all(m.tls in TLS_VERSIONS for m in starttls_server.messages)
    assert starttls_server.connections == 1
    assert mailer.connections_opened == 1
    assert starttls_server.logins == 1
    assert starttls_server.failed_logins == 0
    assert sleeps == []
    mailer.close()
    assert starttls_server.handler.quits == 1


def test_implicit_tls_with_a_login_sends_over_one_encrypted_connection(
    implicit_tls_server: SmtpServer,
    make_mailer: MakeMailer,
    client_tls: ssl.SSLContext,
    sleeps: list[float],
) -> None:
    """security="tls": TLS from the first byte; one connection, one login, all delivered."""
    mailer = make_mailer(implicit_tls_server, security="tls", tls_context=client_tls)

    for n in range(5):
        mailer.send(notification(n))

    assert delivered_ids(implicit_tls_server) == ids(*range(5))
    assert all(m.tls in TLS_VERSIONS for m in implicit_tls_server.messages)
    assert implicit_tls_server.connections == 1
    assert mailer.connections_opened == 1
    assert implicit_tls_server.logins == 1
    assert implicit_tls_server.failed_logins == 0
    assert sleeps == []


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_restart_of_the_tls_server_is_survived_by_reconnecting_and_logging_in_again(
    start_server: StartServer,
    make_mailer: MakeMailer,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    sleeps: list[float],
    security: str,
) -> None:
    """The server restarts on its port with the same TLS and login: the mailer re-opens
    the dropped connection at once (no backoff), logs in again and delivers over TLS."""
    server = start_server(
        tls_context=server_tls, implicit_tls=security == "tls", login=(USER, PASSWORD)
    )
    mailer = make_mailer(server, security=security, tls_context=client_tls)
    mailer.send(notification(1))
    server.stop()
    server.start()

    mailer.send(notification(2))

    assert delivered_ids(server) == ids(1, 2)
    assert all(m.tls in TLS_VERSIONS for m in server.messages)
    assert server.connections == 2
    assert server.logins == 2
    assert sleeps == []


# ----- wrong credentials ---------------------------------------------------------------------


def test_a_wrong_password_is_a_temporary_failure_and_a_corrected_one_delivers(
    starttls_server: SmtpServer,
    make_mailer: MakeMailer,
    client_tls: ssl.SSLContext,
    sleeps: list[float],
    clock: ManualClock,
) -> None:
    """535 on login: MailTemporaryError at once (the alert stays PENDING) — no quick retries,
    which cannot help and could lock the account — and the mailer pauses; nothing delivered.
    With the password fixed, mail goes out."""
    wrong = make_mailer(
        starttls_server, security="starttls", tls_context=client_tls, password="wrong"
    )

    with pytest.raises(MailTemporaryError, match="authentication failed: 535") as failed:
        wrong.send(notification(1))

    assert not isinstance(failed.value, MailNotAttempted)
    assert starttls_server.messages == []
    assert sleeps == []  # one attempt
    assert starttls_server.connections == 1
    # smtplib tries each mechanism the server offers (PLAIN, then LOGIN) before giving up
    assert starttls_server.failed_logins == 2
    assert starttls_server.logins == 0

    with pytest.raises(MailNotAttempted):  # paused: fails at once, nothing tried
        wrong.send(notification(2))
    assert starttls_server.connections == 1
    assert sleeps == []

    clock.advance(PAUSE_S)  # the pause is over: a trial, still refused
    with pytest.raises(MailTemporaryError, match="authentication failed: 535") as failed:
        wrong.send(notification(3))
    assert not isinstance(failed.value, MailNotAttempted)
    assert starttls_server.failed_logins == 2 * 2

    fixed = make_mailer(starttls_server, security="starttls", tls_context=client_tls)
    for n in (1, 2, 3):
        fixed.send(notification(n))

    assert delivered_ids(starttls_server) == ids(1, 2, 3)
    assert starttls_server.logins == 1


# ----- certificates the mailer must not accept -----------------------------------------------


@pytest.mark.parametrize("security", ["starttls", "tls"])
@pytest.mark.parametrize("case", ["other CA", "other host name", "default context"])
def test_an_unverified_server_certificate_fails_before_any_login(
    start_server: StartServer,
    make_mailer: MakeMailer,
    ca: trustme.CA,
    client_tls: ssl.SSLContext,
    sleeps: list[float],
    security: str,
    case: str,
) -> None:
    """A certificate from a CA the mailer does not trust, or for another host name, fails
    the TLS handshake: MailTemporaryError at once (a configuration problem, not retried),
    no AUTH ever reached the server, nothing sent."""
    if case == "other CA":
        server_tls, client = server_context(trustme.CA(), HOST, "localhost"), client_tls
    elif case == "other host name":
        server_tls, client = server_context(ca, "mail.example.com"), client_tls
    else:  # the mailer's default: the system's CAs, which do not know this throwaway CA
        server_tls, client = server_context(ca, HOST, "localhost"), None
    server = start_server(
        tls_context=server_tls, implicit_tls=security == "tls", login=(USER, PASSWORD)
    )
    mailer = make_mailer(server, security=security, tls_context=client)

    with pytest.raises(MailTemporaryError, match="certificate verify failed"):
        mailer.send(notification(1))

    assert server.messages == []
    assert server.logins == 0
    assert server.failed_logins == 0
    assert mailer.connections_opened == 0
    assert sleeps == []
    # STARTTLS: the SMTP session began in clear; implicit TLS: it never began
    assert server.connections == (1 if security == "starttls" else 0)


# ----- a server that requires STARTTLS, a mailer configured without TLS ----------------------


def test_security_none_with_a_user_never_sends_the_password_to_a_starttls_only_server(
    starttls_server: SmtpServer,
    make_mailer: MakeMailer,
    sleeps: list[float],
) -> None:
    """Before STARTTLS the server does not offer AUTH, so smtplib refuses to log in: a
    temporary failure at once (then paused); no AUTH, nothing delivered."""
    mailer = make_mailer(starttls_server, security="none", tls_context=None)

    with pytest.raises(MailTemporaryError, match="SMTP AUTH extension not supported") as failed:
        mailer.send(notification(1))

    assert not isinstance(failed.value, MailNotAttempted)
    assert starttls_server.messages == []
    assert starttls_server.logins == 0
    assert starttls_server.failed_logins == 0
    assert starttls_server.connections == 1
    assert sleeps == []
    with pytest.raises(MailNotAttempted):
        mailer.send(notification(2))


def test_security_none_without_a_user_waits_for_the_configuration_to_be_fixed(
    starttls_server: SmtpServer,
    make_mailer: MakeMailer,
    sleeps: list[float],
) -> None:
    """The server answers MAIL FROM with 530 (STARTTLS first): the mailer's configuration is
    wrong, not the message, so it is a temporary failure (PENDING, not FAILED) and the mailer
    pauses instead of failing every alert permanently."""
    mailer = make_mailer(
        starttls_server, security="none", tls_context=None, user=None, password=None
    )

    with pytest.raises(MailTemporaryError, match="530 Must issue a STARTTLS command first") as err:
        mailer.send(notification(1))
    assert not isinstance(err.value, MailNotAttempted)
    with pytest.raises(MailNotAttempted):
        mailer.send(notification(2))

    assert starttls_server.messages == []
    assert starttls_server.connections == 1
    assert sleeps == []


def test_a_login_without_tls_to_another_host_is_refused_by_the_settings() -> None:
    """The password would cross the network in clear: refused before anything connects."""
    with pytest.raises(ValueError, match="a login needs TLS"):
        SmtpSettings("mail.example.com", 25, user=USER, password=PASSWORD, security="none")
    assert SmtpSettings(HOST, 25, user=USER, password=PASSWORD, security="none").user == USER

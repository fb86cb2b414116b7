"""The API against abuse, through a real gRPC server on 127.0.0.1 over the in-memory
adapters: undecodable frames, quotas, sessions (the issue's holes, one test or more each)."""

from __future__ import annotations

import hashlib
import logging
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError

from stockalert.adapters.grpc.server import RunningServer, start, stop
from stockalert.adapters.grpc.servicers import peer_host
from stockalert.api.v1 import stockalert_pb2 as pb
from stockalert.api.v1 import stockalert_pb2_grpc as pb_grpc
from stockalert.containers import in_memory_config
from stockalert.domain.commands import LoginUser, RegisterUser
from stockalert.domain.errors import DomainError
from stockalert.domain.model import Email, Ticker
from tests.wiring import build_container, sql_config

PASSWORD = "correct horse"
Servers = Callable[..., tuple[Any, pb_grpc.CommandServiceStub]]

SERVICES = [pb.DESCRIPTOR.services_by_name[name] for name in ("CommandService", "QueryService")]
METHODS = [(service, method) for service in SERVICES for method in service.methods]


def raw_call(channel: grpc.Channel, service: Any, method: Any) -> Any:
    """A stub that sends bytes as they are (no serializer) and gets bytes back."""
    return channel.unary_unary(f"/{service.full_name}/{method.name}")


def parses(method: Any, frame: bytes) -> bool:
    try:
        getattr(pb, method.input_type.name).FromString(frame)
    except DecodeError:
        return False
    return True


def test_random_byte_frames_are_invalid_argument_without_a_traceback(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 random or mutated frames over every method of both services, no token: a frame
    that is not the method's message is INVALID_ARGUMENT naming `request`, with one WARNING
    line and no traceback; one that happens to parse gets an ordinary answer (never INTERNAL
    or UNKNOWN)."""
    caplog.set_level(logging.INFO)
    rng = random.Random(15)
    valid = pb.RegisterUserRequest(email="a@example.com", password="x" * 9).SerializeToString()
    codes: Counter[str] = Counter()
    undecodable = 0
    for n in range(1000):
        service, method = METHODS[n % len(METHODS)]
        if n % 3 == 0:  # a valid frame with a few bytes flipped or cut
            frame = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            frame = frame[: rng.randint(1, len(frame))]
        else:
            frame = bytearray(rng.randbytes(rng.randint(1, 300)))
        bad = not parses(method, bytes(frame))
        undecodable += bad
        with pytest.raises(grpc.RpcError) as excinfo:
            raw_call(channel, service, method)(bytes(frame), timeout=10)
        code = excinfo.value.code()
        codes[code.name] += 1
        if bad:
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (method.name, frame)
            assert (excinfo.value.details() or "").startswith(
                f"request: not a valid {method.input_type.name} message"
            )
        else:
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), code
    assert undecodable > 800, codes
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    warnings = [r for r in caplog.records if "event=rpc_undecodable" in r.getMessage()]
    assert len(warnings) == undecodable


# ----- quotas ----------------------------------------------------------------------------------


@pytest.fixture
def limited() -> Iterator[Servers]:
    """A server whose container has these limits; its container and a command stub."""
    opened: list[tuple[Any, RunningServer, grpc.Channel]] = []

    def open_server(database: str = "", **limits: int) -> tuple[Any, pb_grpc.CommandServiceStub]:
        config = sql_config(database) if database else in_memory_config()
        config["limits"] = {**config["limits"], **limits}
        container = build_container(config=config)
        running = start(
            container.bus(), "127.0.0.1:0", max_request_bytes=config["limits"]["request_bytes"]
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        opened.append((container, running, channel))
        return container, pb_grpc.CommandServiceStub(channel)

    yield open_server
    for container, running, channel in opened:
        channel.close()
        stop(running, grace=0)
        container.reset_override()


def register(
    commands: pb_grpc.CommandServiceStub, email: str, *tickers: str, request_id: str = ""
) -> str:
    reply = commands.RegisterUser(
        pb.RegisterUserRequest(
            request_id=request_id or f"reg-{email}-{len(tickers)}",
            email=email,
            password=PASSWORD,
            subscriptions=[pb.SubscriptionSpec(ticker=t) for t in tickers],
        )
    )
    return str(reply.user_id)


def token_of(container: Any, user_id: str) -> list[tuple[str, str]]:
    token, _ = container.auth.tokens().issue(user_id, container.core.clock().now())
    return [("authorization", f"Bearer {token}")]


def test_a_10000_subscription_registration_is_refused_fast_while_others_write(
    limited: Servers,
) -> None:
    """~180 KB of subscriptions, sent again and again: RESOURCE_EXHAUSTED from the request
    size limit before it is parsed, nothing stored; another user's SetSubscriptions meanwhile
    answer in milliseconds (tests/integration/test_api_hardening.py: the same on SQLite, where
    the probe held the write lock for 10 s)."""
    refused_fast_beside_writes(*limited())


def refused_fast_beside_writes(container: Any, commands: pb_grpc.CommandServiceStub) -> None:
    """The 10,000-subscription registration flooding the server while a user writes."""
    alice = register(commands, "alice@example.com", "AAPL")
    huge = pb.RegisterUserRequest(
        request_id="huge",
        email="mallory@example.com",
        password=PASSWORD,
        subscriptions=[
            pb.SubscriptionSpec(ticker=f"T{n:05d}", high_value=1.0) for n in range(10_000)
        ],
    )
    assert huge.ByteSize() > 150_000
    stop_flooding = threading.Event()
    refused: list[tuple[grpc.StatusCode, float]] = []

    def flood() -> None:
        while not stop_flooding.is_set():
            began = time.monotonic()
            with pytest.raises(grpc.RpcError) as excinfo:
                commands.RegisterUser(huge, timeout=10)
            refused.append((excinfo.value.code(), time.monotonic() - began))

    flooder = threading.Thread(target=flood)
    flooder.start()
    writes: list[float] = []
    try:
        for n in range(20):
            began = time.monotonic()
            commands.SetSubscription(
                pb.SetSubscriptionRequest(request_id=f"s{n}", ticker="AAPL", high_value=100.0 + n),
                metadata=token_of(container, alice),
                timeout=5,
            )
            writes.append(time.monotonic() - began)
    finally:
        stop_flooding.set()
        flooder.join()
    assert refused, "the flood never got an answer"
    assert {code for code, _ in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    # Generous bounds (2 shared cores, other tests beside): the probe saw 10 s and timeouts.
    assert statistics.median(writes) < 0.25, writes
    assert statistics.median(took for _, took in refused) < 1.0, refused
    with container.core.uow() as uow:
        assert uow.users.get_by_email(Email("mallory@example.com")) is None
        assert uow.subscriptions.tickers_in_use() == {Ticker("AAPL")}


def test_a_registration_listing_more_than_the_per_user_limit_is_invalid_argument(
    limited: Servers,
) -> None:
    _, commands = limited(subscriptions_per_user=5)
    with pytest.raises(grpc.RpcError) as excinfo:
        register(commands, "bob@example.com", *(f"T{n}" for n in range(6)))
    assert excinfo.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert excinfo.value.details() == "subscriptions: at most 5 per user, got 6"
    register(commands, "bob@example.com", *(f"T{n}" for n in range(5)))  # at the limit: fine


def test_one_subscription_past_the_per_user_limit_is_resource_exhausted_and_not_stored(
    limited: Servers,
) -> None:
    """The refusal is not stored in the request ledger: the same request succeeds once the
    user made room; changing an existing subscription is never refused."""
    container, commands = limited(subscriptions_per_user=3)
    user = register(commands, "carol@example.com", "AAA", "BBB", "CCC")
    auth = token_of(container, user)
    sixth = pb.SetSubscriptionRequest(request_id="add-ddd", ticker="DDD", high_value=5.0)
    with pytest.raises(grpc.RpcError) as excinfo:
        commands.SetSubscription(sixth, metadata=auth)
    assert excinfo.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert excinfo.value.details() == (
        "ticker: at most 3 subscriptions per user, and you have 3: remove one first"
    )
    commands.SetSubscription(
        pb.SetSubscriptionRequest(request_id="chg", ticker="AAA", high_value=9.0), metadata=auth
    )
    commands.RemoveSubscription(
        pb.RemoveSubscriptionRequest(request_id="rm", ticker="BBB"), metadata=auth
    )
    reply = commands.SetSubscription(sixth, metadata=auth)
    assert reply.subscription.ticker == "DDD"


def test_subscriptions_that_would_pass_the_systems_distinct_tickers_are_refused(
    limited: Servers,
) -> None:
    """With room for 3 tickers in the system: a fourth is refused (in a registration too,
    nothing stored); watching a ticker already watched costs nothing and is accepted."""
    container, commands = limited(tickers=3)
    register(commands, "dan@example.com", "AAA", "BBB")
    with pytest.raises(grpc.RpcError) as excinfo:
        register(commands, "erin@example.com", "AAA", "CCC", "DDD")
    assert excinfo.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert excinfo.value.details() == (
        "subscriptions: the system watches at most 3 distinct tickers and has 2; 2 new requested"
    )
    erin = register(commands, "erin@example.com", "AAA", "CCC")
    with pytest.raises(grpc.RpcError) as excinfo:
        commands.SetSubscription(
            pb.SetSubscriptionRequest(request_id="x", ticker="EEE"),
            metadata=token_of(container, erin),
        )
    assert excinfo.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    commands.SetSubscription(
        pb.SetSubscriptionRequest(request_id="y", ticker="BBB"), metadata=token_of(container, erin)
    )


# ----- sessions and replays --------------------------------------------------------------------


def test_a_registration_replayed_with_another_password_is_refused(
    container: Any, channel: grpc.Channel
) -> None:
    """The same request id and password: the stored reply; another password: INVALID_ARGUMENT
    on request_id (the client must not believe the new one is set), and the first password
    still logs in. The ledger keeps a keyed digest of the password, never the password."""
    commands = pb_grpc.CommandServiceStub(channel)
    first = pb.RegisterUserRequest(request_id="r1", email="fay@example.com", password=PASSWORD)
    user_id = commands.RegisterUser(first).user_id
    assert commands.RegisterUser(first).user_id == user_id  # a replay: the same answer
    other = pb.RegisterUserRequest(
        request_id="r1", email="fay@example.com", password="another password"
    )
    with pytest.raises(grpc.RpcError) as excinfo:
        commands.RegisterUser(other)
    assert excinfo.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (excinfo.value.details() or "").startswith(
        "request_id: 'r1' was already used for a different request"
    )
    commands.LoginUser(pb.LoginUserRequest(email="fay@example.com", password=PASSWORD))
    stored = repr(container.core.store().snapshot()["requests"])
    assert "fay@example.com" in stored  # the ledger's rows of this user
    assert PASSWORD not in stored
    assert hashlib.sha256(PASSWORD.encode()).hexdigest() not in stored


def test_a_token_issued_in_the_future_is_refused(container: Any, channel: grpc.Channel) -> None:
    """Signed with the server's key, but its iat an hour ahead: UNAUTHENTICATED (it would
    pass for a fresh login, which DeleteUser requires); 10 s ahead (clock skew) is fine."""
    commands = pb_grpc.CommandServiceStub(channel)
    user_id = register(commands, "gus@example.com")
    tokens, now = container.auth.tokens(), container.core.clock().now()
    ahead, _ = tokens.issue(user_id, now + timedelta(hours=1))
    with pytest.raises(grpc.RpcError) as excinfo:
        commands.DeleteUser(
            pb.DeleteUserRequest(request_id="d1"), metadata=[("authorization", f"Bearer {ahead}")]
        )
    assert excinfo.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert excinfo.value.details() == "invalid token: issued in the future"
    skewed, _ = tokens.issue(user_id, now + timedelta(seconds=10))
    commands.DeleteUser(
        pb.DeleteUserRequest(request_id="d2"), metadata=[("authorization", f"Bearer {skewed}")]
    )


def test_logout_ends_every_session_of_the_user_on_both_services(
    channel: grpc.Channel,
) -> None:
    """Two logins (two devices); LogoutUser with one token: both tokens are refused by the
    command and the query service; another user is untouched; a new login works."""
    commands, queries = pb_grpc.CommandServiceStub(channel), pb_grpc.QueryServiceStub(channel)
    register(commands, "hal@example.com", "AAPL")
    register(commands, "ivy@example.com", "AAPL")

    def login(email: str) -> list[tuple[str, str]]:
        reply = commands.LoginUser(pb.LoginUserRequest(email=email, password=PASSWORD))
        return [("authorization", f"Bearer {reply.token}")]

    laptop, phone, other = (
        login("hal@example.com"),
        login("hal@example.com"),
        login("ivy@example.com"),
    )
    queries.ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=phone)

    commands.LogoutUser(pb.LogoutUserRequest(), metadata=laptop)

    calls: list[tuple[Callable[..., Any], Any]] = [
        (queries.ListSubscriptions, pb.ListSubscriptionsRequest()),
        (commands.SetSubscription, pb.SetSubscriptionRequest(request_id="s", ticker="MSFT")),
        (commands.LogoutUser, pb.LogoutUserRequest()),
    ]
    for token in (laptop, phone):
        for call, request in calls:
            with pytest.raises(grpc.RpcError) as excinfo:
                call(request, metadata=token)
            assert excinfo.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert "this session has ended" in (excinfo.value.details() or "")
    queries.ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=other)
    again = login("hal@example.com")
    assert queries.ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=again).subscriptions


# ----- login throttling ------------------------------------------------------------------------


def login_code(commands: pb_grpc.CommandServiceStub, email: str, password: str) -> str:
    """The status of one login ("OK" or the code's name), and its details after a colon."""
    try:
        commands.LoginUser(pb.LoginUserRequest(email=email, password=password))
    except grpc.RpcError as err:
        return f"{err.code().name}: {err.details()}"
    return "OK"


def test_failed_logins_are_throttled_with_growing_delays_then_forgotten(
    container: Any, channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    """Five wrong passwords cost nothing; the sixth makes the account wait 1 s from this
    address, the seventh 2 s: meanwhile even the right password is refused without being
    checked; once the wait is over the right one works and clears the count. The log names
    the account by a keyed hash and the client by its address, never the e-mail."""
    caplog.set_level(logging.INFO)
    commands = pb_grpc.CommandServiceStub(channel)
    clock = container.core.clock()
    register(commands, "jay@example.com")
    wrong = "UNAUTHENTICATED: wrong e-mail or password"
    for _ in range(6):
        assert login_code(commands, "jay@example.com", "guess") == wrong
    throttled = (
        "RESOURCE_EXHAUSTED: email: too many failed logins for this account from this "
        "address; retry in {} s"
    )
    assert login_code(commands, "jay@example.com", PASSWORD) == throttled.format(1)
    clock.advance(1)
    assert login_code(commands, "jay@example.com", "guess") == wrong  # the 7th: 2 s
    clock.advance(1)
    assert login_code(commands, "jay@example.com", PASSWORD) == throttled.format(1)
    clock.advance(1)
    assert login_code(commands, "jay@example.com", PASSWORD) == "OK"
    for _ in range(5):  # the count was cleared: five free failures again
        assert login_code(commands, "jay@example.com", "guess") == wrong

    lines = [r.getMessage() for r in caplog.records if "event=login_failed" in r.getMessage()]
    assert len(lines) == 12
    assert all("peer=127.0.0.1" in line and "account=" in line for line in lines)
    assert not [r for r in caplog.records if "jay@example.com" in r.getMessage()]


def test_an_attacker_cannot_lock_the_user_out_from_their_own_address(container: Any) -> None:
    """Guesses from one address wait up to 15 minutes there; the user's own address is
    unaffected until the whole account has 20 failures, and then waits at most 30 s."""
    bus, clock = container.bus(), container.core.clock()
    bus.handle(RegisterUser("r", "kim@example.com", PASSWORD))

    def login(password: str, peer: str) -> str:
        try:
            bus.handle(LoginUser("kim@example.com", password, peer))
        except DomainError as err:
            return err.code.name
        return "OK"

    for _ in range(12):
        assert login("guess", "203.0.113.9") in ("UNAUTHENTICATED", "RESOURCE_EXHAUSTED")
        clock.advance(0.5)
    assert login(PASSWORD, "203.0.113.9") == "RESOURCE_EXHAUSTED"
    assert login(PASSWORD, "198.51.100.4") == "OK"  # the user, elsewhere

    for n in range(25):  # a botnet: a new address each time
        assert login("guess", f"10.0.{n}.1") in ("UNAUTHENTICATED", "RESOURCE_EXHAUSTED")
    assert login(PASSWORD, "198.51.100.4") == "RESOURCE_EXHAUSTED"
    clock.advance(30)
    assert login(PASSWORD, "198.51.100.4") == "OK"


def test_failed_logins_are_forgotten_fifteen_minutes_after_the_last(
    container: Any, channel: grpc.Channel
) -> None:
    """Five failures, a quarter of an hour of quiet, five more: still no wait (the count
    started again); without the quiet, the sixth would have waited."""
    commands = pb_grpc.CommandServiceStub(channel)
    register(commands, "lou@example.com")
    wrong = "UNAUTHENTICATED: wrong e-mail or password"
    for _ in range(5):
        assert login_code(commands, "lou@example.com", "guess") == wrong
    container.core.clock().advance(15 * 60 + 1)
    for _ in range(5):
        assert login_code(commands, "lou@example.com", "guess") == wrong
    assert login_code(commands, "lou@example.com", PASSWORD) == "OK"


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.0.0.7:5123", "10.0.0.7"),
        ("ipv6:[::1]:5123", "::1"),
        ("ipv6:%5B2001:db8::7%5D:443", "2001:db8::7"),
        ("unix:/run/stockalert.sock", "unix:/run/stockalert.sock"),
    ],
)
def test_the_throttle_counts_per_client_host_not_per_connection(peer: str, host: str) -> None:
    """gRPC's peer string without the port (a new connection must not reset the count)."""
    assert peer_host(peer) == host

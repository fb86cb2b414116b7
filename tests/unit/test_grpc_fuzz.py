"""Property tests of the gRPC API: random field values never crash a call nor half-apply it.

One server runs for the whole module; every example gets its own user (unique e-mail, set
up through the bus) and a fresh token, so examples do not depend on each other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import string
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import attrs
import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stockalert.adapters.grpc.server import start, stop
from stockalert.adapters.memory.fakes import ManualClock
from stockalert.adapters.memory.storage import MemoryStore
from stockalert.api.v1 import stockalert_pb2 as pb
from stockalert.api.v1 import stockalert_pb2_grpc as pb_grpc
from stockalert.containers import in_memory_config
from stockalert.domain.commands import RecordQuotes, RegisterUser
from stockalert.domain.commands import SubscriptionSpec as Spec
from stockalert.domain.model import Quote, Ticker
from stockalert.domain.views import UserRegistered
from tests.wiring import build_container

PASSWORD = "correct horse"  # the password of every fuzz account
SERVER_SECRET = in_memory_config()["auth_secret"]
OTHER_SECRET = "another-secret-that-is-long-enough-xxxxxxxx"
AAPL_PRICES = [100.0, 110.0, 125.5, 90.25, 130.0]

ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # a quota (subscriptions per user, tickers)
}
# What an INVALID_ARGUMENT message starts with: the name of the offending field.
FIELD_PREFIX = re.compile(
    r"^(request|request_id|email|password|ticker|high_value|low_value|rearm_percent|cooldown_s"
    r"|remind_every_s|clear_high_value|clear_low_value|count|limit"
    r"|subscriptions|subscriptions\[\d+\]\.(ticker|high_value|low_value|rearm_percent)): "
)
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
LONG_TICKER = "\N{GRINNING FACE}" * 2000  # echoed in the error message, it overflows it


# ----- the server ----------------------------------------------------------------------------


@attrs.define
class World:
    """One running server, its container's state and stubs talking to it."""

    container: Any
    store: MemoryStore
    clock: ManualClock
    commands: pb_grpc.CommandServiceStub
    queries: pb_grpc.QueryServiceStub
    emails: Iterator[int] = attrs.Factory(lambda: itertools.count(1))
    channel: grpc.Channel | None = None

    def new_user(self, *specs: Spec) -> tuple[str, list[tuple[str, str]]]:
        """A fresh user with these subscriptions (set up off the wire), id and bearer metadata."""
        email = f"fuzz{next(self.emails)}@example.com"
        reply = self.container.bus().handle(RegisterUser("setup", email, PASSWORD, specs))
        assert isinstance(reply, UserRegistered)
        token, _ = self.container.auth.tokens().issue(reply.user_id, self.clock.now())
        return reply.user_id, [("authorization", f"Bearer {token}")]

    def snapshot(self) -> dict[str, dict[Any, Any]]:
        """Copies of every write-model table but the request ledger."""
        return self.store.snapshot(without=("requests",))


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """The production container with in-memory adapters and fakes, served once per module."""
    container = build_container()
    clock = container.core.clock()
    for minute, price in enumerate(AAPL_PRICES, start=1):
        quote = Quote(Ticker("AAPL"), price, clock.now() + timedelta(minutes=minute))
        container.bus().handle(RecordQuotes((quote,)))
    running = start(container.bus(), "127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield World(
        container,
        container.core.store(),
        clock,
        pb_grpc.CommandServiceStub(channel),
        pb_grpc.QueryServiceStub(channel),
        channel=channel,
    )
    channel.close()
    stop(running, grace=0)
    container.reset_override()


def outcome(call: Callable[[], Any]) -> tuple[Any, grpc.StatusCode | None, str]:
    """(reply, None, "") when the call succeeds, (None, code, details) when it fails."""
    try:
        return call(), None, ""
    except grpc.RpcError as err:
        return None, err.code(), err.details() or ""


def check_failure(code: grpc.StatusCode, details: str, allowed: set[grpc.StatusCode]) -> None:
    """A failure has a documented code; INVALID_ARGUMENT names the field it is about."""
    assert code in allowed, f"{code}: {details[:300]}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert FIELD_PREFIX.match(details), details[:300]


# ----- strategies ----------------------------------------------------------------------------

CHARS = st.characters(codec="utf-8")  # any code point protobuf can carry (no surrogates)
SPECIAL_TEXT = [
    "",
    " ",
    "   ",
    "\r\n",
    "\t",
    "\x00",
    "AAPL\r\nBcc: x@y.com",
    "\N{IDEOGRAPHIC SPACE}",
    "\N{ZERO WIDTH SPACE}",
    "\N{LATIN SMALL LETTER LONG S}py",
    "é" * 300,
]
texts = st.one_of(
    st.text(CHARS),
    st.text(CHARS, min_size=100, max_size=2000),
    st.sampled_from(SPECIAL_TEXT),
    st.builds(lambda char, n: char * n, CHARS, st.integers(0, 2000)),
)
tickers = st.one_of(
    st.sampled_from(["AAPL", " aapl ", "aapl\r\n", "MSFT", "msft", "NVDA", "^GSPC", "BRK-B"]),
    st.from_regex(r"\^?[A-Za-z0-9][A-Za-z0-9.=-]{0,17}", fullmatch=True),
    texts,
)
request_ids = st.one_of(
    st.uuids().map(str),
    st.text(string.ascii_letters + string.digits + " -", max_size=140),
    texts,
)
emails = st.one_of(
    st.integers(0, 10**12).map(lambda n: f"user{n}@example.com"),
    st.emails(),
    texts,
)
passwords = st.one_of(st.just(PASSWORD), texts)
floats = st.one_of(
    st.floats(),
    st.sampled_from(
        [0.0, -0.0, -1.0, 5e-324, 2.2e-308, 1e308, float("inf"), float("-inf"), float("nan")]
    ),
    st.floats(min_value=0.01, max_value=1000.0),
    st.floats(min_value=0.0, max_value=50.0),
)
int32s = st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-5, 1005))
maybe_floats = st.none() | floats


@st.composite
def subscription_specs(draw: st.DrawFn) -> pb.SubscriptionSpec:
    """A spec with a random subset of its optional fields set."""
    fields = {
        name: value
        for name in ("high_value", "low_value", "rearm_percent")
        if (value := draw(maybe_floats)) is not None
    }
    return pb.SubscriptionSpec(ticker=draw(tickers), **fields)


@st.composite
def set_subscription_requests(draw: st.DrawFn) -> pb.SetSubscriptionRequest:
    """A SetSubscription request with a random subset of its optional fields set."""
    fields = {
        name: value
        for name in ("high_value", "low_value", "rearm_percent", "cooldown_s", "remind_every_s")
        if (value := draw(maybe_floats)) is not None
    }
    return pb.SetSubscriptionRequest(
        request_id=draw(request_ids),
        ticker=draw(tickers),
        clear_high_value=draw(st.booleans()),
        clear_low_value=draw(st.booleans()),
        **fields,
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(claims: dict[str, Any], secret: str) -> str:
    """An HS256 JWT of any JSON claims (PyJWT's encoder would refuse some of them)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{b64(signature.digest())}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
claims = st.fixed_dictionaries(
    {},
    optional={
        # never a real user: SequentialIds names them id1, id2, ...
        "sub": json_values.filter(lambda v: not re.fullmatch(r"id\d+", str(v))),
        "iss": st.just("stockalert") | json_values,
        "iat": json_values,
        "exp": json_values,
        "nbf": json_values,
    },
)
# Only header-legal bytes: a client library refuses anything else before sending.
HEADER_CHARS = "".join(chr(c) for c in range(0x20, 0x7F))
header_text = st.text(HEADER_CHARS, max_size=2000)
tokens = st.one_of(
    header_text,
    st.lists(st.binary(max_size=60).map(b64), min_size=1, max_size=4).map(".".join),
    st.tuples(json_values, json_values, st.binary(max_size=40)).map(
        lambda parts: ".".join(
            [b64(json.dumps(parts[0]).encode()), b64(json.dumps(parts[1]).encode()), b64(parts[2])]
        )
    ),
    claims.map(lambda c: sign(c, OTHER_SECRET)),
    claims.map(lambda c: sign(c, SERVER_SECRET)),
)
authorizations = st.one_of(
    header_text,
    st.binary(max_size=2000).map(lambda raw: bytes(0x20 + b % 0x5F for b in raw)),
    st.tuples(st.sampled_from(["Bearer ", "bearer ", "BEARER  ", "Bearer", "Basic "]), tokens).map(
        "".join
    ),
)


# ----- commands ------------------------------------------------------------------------------


@FUZZ
@given(
    request_id=request_ids,
    email=emails,
    password=passwords,
    specs=st.lists(subscription_specs(), max_size=4),
)
@example(
    request_id="r1",
    email="long@example.com",
    password=PASSWORD,
    specs=[pb.SubscriptionSpec(ticker=LONG_TICKER)],
)
def test_register_user_succeeds_whole_or_fails_cleanly(
    world: World, request_id: str, email: str, password: str, specs: list[pb.SubscriptionSpec]
) -> None:
    """RegisterUser creates one user with all its subscriptions, or fails changing nothing."""
    before = world.snapshot()
    request = pb.RegisterUserRequest(
        request_id=request_id, email=email, password=password, subscriptions=specs
    )

    reply, code, details = outcome(lambda: world.commands.RegisterUser(request, timeout=5))

    if code is not None:
        check_failure(code, details, ALLOWED - {grpc.StatusCode.UNAUTHENTICATED})
        assert world.snapshot() == before
        return
    users, subscriptions = world.store.users, world.store.subscriptions
    if reply.user_id in before["users"]:  # a replay of an earlier registration
        assert world.snapshot() == before
        return
    assert set(users) - set(before["users"]) == {reply.user_id}
    new = [s for sid, s in subscriptions.items() if sid not in before["subscriptions"]]
    assert len(new) == len(specs)
    assert all(s.user_id == reply.user_id for s in new)


@FUZZ
@given(request=set_subscription_requests())
@example(request=pb.SetSubscriptionRequest(request_id="r1", ticker=LONG_TICKER))
def test_set_subscription_succeeds_or_leaves_the_subscriptions_as_they_were(
    world: World, request: pb.SetSubscriptionRequest
) -> None:
    """SetSubscription answers a documented code; a failure leaves every subscription as is."""
    user_id, metadata = world.new_user(
        Spec("AAPL", high_value=200.0, low_value=100.0), Spec("MSFT")
    )
    before = world.snapshot()

    reply, code, details = outcome(
        lambda: world.commands.SetSubscription(request, metadata=metadata, timeout=5)
    )

    if code is not None:
        check_failure(code, details, {grpc.StatusCode.INVALID_ARGUMENT})
        assert world.snapshot() == before
        return
    sub = reply.subscription
    stored = world.store.subscriptions[sub.subscription_id]
    assert (stored.user_id, stored.ticker.value) == (user_id, sub.ticker)
    assert stored.high_value == (sub.high_value if sub.HasField("high_value") else None)
    assert stored.low_value == (sub.low_value if sub.HasField("low_value") else None)
    if stored.high_value is not None and stored.low_value is not None:
        assert stored.high_value > stored.low_value
    others = {k: v for k, v in world.store.subscriptions.items() if k != sub.subscription_id}
    assert others == {k: v for k, v in before["subscriptions"].items() if k != sub.subscription_id}


@FUZZ
@given(request_id=request_ids, ticker=tickers)
@example(request_id="r1", ticker=LONG_TICKER)
def test_remove_subscription_removes_exactly_one_or_nothing(
    world: World, request_id: str, ticker: str
) -> None:
    """RemoveSubscription drops the named subscription of the caller, or fails changing nothing."""
    user_id, metadata = world.new_user(Spec("AAPL", high_value=200.0), Spec("MSFT"))
    before = world.snapshot()
    request = pb.RemoveSubscriptionRequest(request_id=request_id, ticker=ticker)

    _, code, details = outcome(
        lambda: world.commands.RemoveSubscription(request, metadata=metadata, timeout=5)
    )

    if code is not None:
        check_failure(code, details, {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND})
        assert world.snapshot() == before
        return
    gone = set(before["subscriptions"]) - set(world.store.subscriptions)
    assert len(gone) == 1
    (removed,) = [before["subscriptions"][sid] for sid in gone]
    assert removed.user_id == user_id
    assert removed.ticker.value == ticker.strip().upper()
    assert not [key for key in world.store.alert_states if key[0] in gone]


@FUZZ
@given(request_id=request_ids, login_age_s=st.one_of(st.integers(0, 1200), st.integers(0, 43199)))
def test_delete_user_needs_a_recent_login_and_then_removes_everything(
    world: World, request_id: str, login_age_s: int
) -> None:
    """DeleteUser with a stale login is PERMISSION_DENIED; else it succeeds or fails cleanly."""
    user_id, metadata = world.new_user(Spec("AAPL", high_value=200.0))
    world.clock.advance(login_age_s)
    before = world.snapshot()
    request = pb.DeleteUserRequest(request_id=request_id)

    _, code, details = outcome(
        lambda: world.commands.DeleteUser(request, metadata=metadata, timeout=5)
    )

    if login_age_s > 600:
        assert code == grpc.StatusCode.PERMISSION_DENIED, details
    if code is not None:
        check_failure(
            code, details, {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED}
        )
        assert world.snapshot() == before
        return
    assert user_id not in world.store.users
    assert all(s.user_id != user_id for s in world.store.subscriptions.values())
    assert set(world.store.users) == set(before["users"]) - {user_id}


# ----- queries -------------------------------------------------------------------------------


@FUZZ
@given(ticker=tickers, watch_two=st.booleans())
@example(ticker=LONG_TICKER, watch_two=False)
def test_get_latest_value_answers_the_newest_quote_or_a_documented_code(
    world: World, ticker: str, watch_two: bool
) -> None:
    """GetLatestValue answers AAPL's newest price, or INVALID_ARGUMENT / NOT_FOUND."""
    specs = [Spec("AAPL")]
    if watch_two:
        specs.append(Spec("MSFT"))
    _, metadata = world.new_user(*specs)
    before = world.snapshot()
    request = pb.GetLatestValueRequest(ticker=ticker)

    reply, code, details = outcome(
        lambda: world.queries.GetLatestValue(request, metadata=metadata, timeout=5)
    )

    assert world.snapshot() == before
    if code is not None:
        check_failure(code, details, {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND})
        return
    assert (reply.ticker, reply.value) == ("AAPL", AAPL_PRICES[-1])


@FUZZ
@given(ticker=tickers, count=int32s, watch_two=st.booleans())
@example(ticker=LONG_TICKER, count=1, watch_two=False)
def test_get_average_value_answers_a_mean_or_a_documented_code(
    world: World, ticker: str, count: int, watch_two: bool
) -> None:
    """GetAverageValue answers the mean of the newest quotes, or names what is wrong."""
    specs = [Spec("AAPL")]
    if watch_two:
        specs.append(Spec("MSFT"))
    _, metadata = world.new_user(*specs)
    before = world.snapshot()
    request = pb.GetAverageValueRequest(ticker=ticker, count=count)

    reply, code, details = outcome(
        lambda: world.queries.GetAverageValue(request, metadata=metadata, timeout=5)
    )

    assert world.snapshot() == before
    if not 1 <= count <= 10_000:
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.startswith("count:")
    if code is not None:
        check_failure(code, details, {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND})
        return
    newest = AAPL_PRICES[-count:]
    assert reply.ticker == "AAPL"
    assert reply.samples == len(newest)
    assert reply.average_value == pytest.approx(sum(newest) / len(newest))


@FUZZ
@given(limit=int32s)
def test_list_notifications_honours_any_limit_or_rejects_it(world: World, limit: int) -> None:
    """ListNotifications answers at most `limit` (0 = 50) records, or INVALID_ARGUMENT limit."""
    _, metadata = world.new_user(Spec("AAPL", high_value=1.0))
    before = world.snapshot()
    request = pb.ListNotificationsRequest(limit=limit)

    reply, code, details = outcome(
        lambda: world.queries.ListNotifications(request, metadata=metadata, timeout=5)
    )

    assert world.snapshot() == before
    if 0 <= limit <= 1000:
        assert code is None, details
        assert len(reply.notifications) <= (limit or 50)
    else:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("limit:")


# ----- authentication ------------------------------------------------------------------------

AUTHENTICATED_RPCS: list[tuple[str, Callable[[World, Any], Any]]] = [
    (
        "SetSubscription",
        lambda w, md: w.commands.SetSubscription(
            pb.SetSubscriptionRequest(request_id="r1", ticker="AAPL", high_value=1.0),
            metadata=md,
            timeout=5,
        ),
    ),
    (
        "RemoveSubscription",
        lambda w, md: w.commands.RemoveSubscription(
            pb.RemoveSubscriptionRequest(request_id="r1", ticker="AAPL"), metadata=md, timeout=5
        ),
    ),
    (
        "DeleteUser",
        lambda w, md: w.commands.DeleteUser(
            pb.DeleteUserRequest(request_id="r1"), metadata=md, timeout=5
        ),
    ),
    (
        "LogoutUser",
        lambda w, md: w.commands.LogoutUser(pb.LogoutUserRequest(), metadata=md, timeout=5),
    ),
    (
        "GetLatestValue",
        lambda w, md: w.queries.GetLatestValue(
            pb.GetLatestValueRequest(ticker="AAPL"), metadata=md, timeout=5
        ),
    ),
    (
        "GetAverageValue",
        lambda w, md: w.queries.GetAverageValue(
            pb.GetAverageValueRequest(ticker="AAPL", count=2), metadata=md, timeout=5
        ),
    ),
    (
        "ListSubscriptions",
        lambda w, md: w.queries.ListSubscriptions(
            pb.ListSubscriptionsRequest(), metadata=md, timeout=5
        ),
    ),
    (
        "ListNotifications",
        lambda w, md: w.queries.ListNotifications(
            pb.ListNotificationsRequest(), metadata=md, timeout=5
        ),
    ),
]


@FUZZ
@given(rpc=st.sampled_from(AUTHENTICATED_RPCS), authorization=authorizations)
@example(
    rpc=AUTHENTICATED_RPCS[6],
    authorization="Bearer "
    + sign({"sub": "nobody", "iss": "stockalert", "iat": 0, "exp": "tomorrow"}, SERVER_SECRET),
)
def test_a_random_authorization_value_is_always_unauthenticated(
    world: World, rpc: tuple[str, Callable[[World, Any], Any]], authorization: str | bytes
) -> None:
    """Any authorization value but a valid token of a live user is UNAUTHENTICATED."""
    name, call = rpc
    before = world.snapshot()

    _, code, details = outcome(lambda: call(world, [("authorization", authorization)]))

    assert code == grpc.StatusCode.UNAUTHENTICATED, f"{name}: {code}: {details}"
    assert world.snapshot() == before


METHODS = [
    (service.full_name, method.name)
    for service in (pb.DESCRIPTOR.services_by_name[n] for n in ("CommandService", "QueryService"))
    for method in service.methods
]


@FUZZ
@given(method=st.sampled_from(METHODS), frame=st.binary(max_size=600), token=st.booleans())
def test_a_raw_byte_frame_never_gets_unknown_or_internal(
    world: World, method: tuple[str, str], frame: bytes, token: bool
) -> None:
    """Any bytes as the request of any method, with or without a valid token: an answer or a
    documented code (INVALID_ARGUMENT naming `request` when the bytes are not the method's
    message), never UNKNOWN or INTERNAL; a failed call leaves everything as it was."""
    assert world.channel is not None
    metadata = world.new_user()[1] if token else []
    service, name = method
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = world.channel.unary_unary(
        f"/{service}/{name}"
    )
    before = world.snapshot()

    _, code, details = outcome(lambda: call(frame, metadata=tuple(metadata), timeout=10))

    if code is not None:
        check_failure(code, details, ALLOWED)
        assert world.snapshot() == before

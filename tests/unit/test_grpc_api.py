"""The public gRPC API over a real server: every RPC, every status code, auth, at-most-once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, timedelta
from types import TracebackType
from typing import Any

import grpc
import jwt
import pytest
from dependency_injector import providers
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from stockalert.adapters.grpc.client import ApiError, StockAlertClient
from stockalert.adapters.grpc.server import RunningServer, start, stop
from stockalert.adapters.memory.fakes import InsecureFastHasher, ManualClock
from stockalert.adapters.memory.storage import MemoryStore
from stockalert.adapters.tokens import JwtTokens
from stockalert.api.v1 import stockalert_pb2 as pb
from stockalert.api.v1 import stockalert_pb2_grpc as pb_grpc
from stockalert.containers import in_memory_config
from stockalert.domain.commands import RecordQuotes
from stockalert.domain.errors import Unavailable
from stockalert.domain.model import Email, Quote, RetryPolicy, Ticker, User
from stockalert.domain.ports import MailTemporaryError
from tests.wiring import build_container

GOOD_SECRET = "correct horse"  # a test account's password
ALICE = "alice@example.com"
BOB = "bob@example.com"
COMMAND_SERVICE = "stockalert.v1.CommandService"
QUERY_SERVICE = "stockalert.v1.QueryService"
OTHER_SECRET = "another-secret-that-is-long-enough-xxxxxxxx"  # not the server's


# ----- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def commands(channel: grpc.Channel) -> pb_grpc.CommandServiceStub:
    return pb_grpc.CommandServiceStub(channel)


@pytest.fixture
def queries(channel: grpc.Channel) -> pb_grpc.QueryServiceStub:
    return pb_grpc.QueryServiceStub(channel)


@pytest.fixture
def connect(address: str) -> Iterator[Callable[[], StockAlertClient]]:
    """Opens clients without retries (a failure is the first answer) and closes them."""
    opened: list[StockAlertClient] = []

    def open_client() -> StockAlertClient:
        client = StockAlertClient(address, attempts=1)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


@pytest.fixture
def anonymous(connect: Callable[[], StockAlertClient]) -> StockAlertClient:
    """A client that is not logged in."""
    return connect()


@pytest.fixture
def alice(connect: Callable[[], StockAlertClient]) -> StockAlertClient:
    """Alice, logged in, watching AAPL (high 200, low 100) and MSFT (no thresholds)."""
    client = connect()
    client.register(
        ALICE,
        GOOD_SECRET,
        [pb.SubscriptionSpec(ticker="AAPL", high_value=200.0, low_value=100.0), spec("MSFT")],
    )
    client.login(ALICE, GOOD_SECRET)
    return client


@pytest.fixture
def bob(connect: Callable[[], StockAlertClient]) -> StockAlertClient:
    """Bob, logged in, watching only TSLA."""
    client = connect()
    client.register(BOB, GOOD_SECRET, [spec("TSLA", high_value=300.0)])
    client.login(BOB, GOOD_SECRET)
    return client


# ----- helpers -------------------------------------------------------------------------------


def spec(ticker: str, **fields: float) -> pb.SubscriptionSpec:
    return pb.SubscriptionSpec(ticker=ticker, **fields)


def feed(container: Any, ticker: str, *prices: float) -> None:
    """Record one quote per price, a minute apart, after the clock's current time."""
    clock = container.core.clock()
    for minute, price in enumerate(prices, start=1):
        quote = Quote(Ticker(ticker), price, clock.now() + timedelta(minutes=minute))
        assert container.bus().handle(RecordQuotes((quote,))) == 1


def fails(call: Callable[[], Any]) -> ApiError:
    """The ApiError a client call raises (the test fails if it succeeds)."""
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    """The RpcError a raw stub call raises (the test fails if it succeeds)."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def code_of(call: Callable[[], Any]) -> grpc.StatusCode | None:
    """The status code a raw stub call fails with, or None (OK) when it succeeds."""
    try:
        call()
    except grpc.RpcError as err:
        return err.code()
    return None


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def subscription_of(client: StockAlertClient, ticker: str) -> pb.Subscription:
    (found,) = [s for s in client.subscriptions().subscriptions if s.ticker == ticker]
    return found


def tickers_of(client: StockAlertClient) -> list[str]:
    return [s.ticker for s in client.subscriptions().subscriptions]


# Every RPC that needs a bearer token, called through raw stubs with the given metadata.
AUTHENTICATED_RPCS = [
    pytest.param(
        lambda c, q, md: c.SetSubscription(
            pb.SetSubscriptionRequest(request_id="r1", ticker="AAPL"), metadata=md
        ),
        id="SetSubscription",
    ),
    pytest.param(
        lambda c, q, md: c.RemoveSubscription(
            pb.RemoveSubscriptionRequest(request_id="r1", ticker="AAPL"), metadata=md
        ),
        id="RemoveSubscription",
    ),
    pytest.param(
        lambda c, q, md: c.DeleteUser(pb.DeleteUserRequest(request_id="r1"), metadata=md),
        id="DeleteUser",
    ),
    pytest.param(
        lambda c, q, md: q.GetLatestValue(pb.GetLatestValueRequest(ticker="AAPL"), metadata=md),
        id="GetLatestValue",
    ),
    pytest.param(
        lambda c, q, md: q.GetAverageValue(
            pb.GetAverageValueRequest(ticker="AAPL", count=3), metadata=md
        ),
        id="GetAverageValue",
    ),
    pytest.param(
        lambda c, q, md: q.ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=md),
        id="ListSubscriptions",
    ),
    pytest.param(
        lambda c, q, md: q.ListNotifications(pb.ListNotificationsRequest(), metadata=md),
        id="ListNotifications",
    ),
]


# ----- success paths -------------------------------------------------------------------------


def test_register_user_with_subscriptions_creates_the_user_and_their_tickers(
    anonymous: StockAlertClient, store: MemoryStore
) -> None:
    """RegisterUser stores the user and one subscription per spec, with the given thresholds."""
    reply = anonymous.register(
        ALICE,
        GOOD_SECRET,
        [spec("aapl", high_value=200.0, rearm_percent=2.0), spec("MSFT", low_value=10.0)],
    )

    assert reply.user_id in store.users
    subs = {s.ticker.value: s for s in store.subscriptions.values()}
    assert set(subs) == {"AAPL", "MSFT"}
    assert all(s.user_id == reply.user_id for s in subs.values())
    assert (subs["AAPL"].high_value, subs["AAPL"].low_value) == (200.0, None)
    assert subs["AAPL"].rearm_percent == 2.0
    assert (subs["MSFT"].high_value, subs["MSFT"].low_value) == (None, 10.0)


def test_login_user_returns_a_token_that_expires_twelve_hours_after_now(
    anonymous: StockAlertClient, clock: ManualClock
) -> None:
    """LoginUser answers a bearer token whose expires_at is the injected clock's now + 12 h."""
    anonymous.register(ALICE, GOOD_SECRET)

    reply = anonymous.login(ALICE, GOOD_SECRET)

    assert reply.token
    assert reply.expires_at.ToDatetime(tzinfo=UTC) == clock.now() + timedelta(hours=12)
    assert list(anonymous.subscriptions().subscriptions) == []


def test_set_subscription_creates_a_subscription_with_the_given_fields(
    alice: StockAlertClient,
) -> None:
    """SetSubscription on a new ticker creates it and replies with the stored subscription."""
    reply = alice.set_subscription(
        "nvda", high_value=150.0, low_value=90.0, rearm_percent=3.0, cooldown_s=60.0
    )

    sub = reply.subscription
    assert sub.ticker == "NVDA"
    assert sub.subscription_id
    assert (sub.high_value, sub.low_value, sub.rearm_percent, sub.cooldown_s) == (
        150.0,
        90.0,
        3.0,
        60.0,
    )
    assert not sub.HasField("remind_every_s")
    assert sub.high_status == pb.SIDE_STATUS_ARMED
    assert sub.low_status == pb.SIDE_STATUS_ARMED
    assert sub.ticker_status == pb.TICKER_STATUS_PENDING
    assert subscription_of(alice, "NVDA") == sub


def test_set_subscription_update_keeps_the_optional_fields_left_unset(
    alice: StockAlertClient,
) -> None:
    """Changing one field of an existing subscription leaves the unset optionals as stored."""
    first = alice.set_subscription(
        "NVDA", high_value=150.0, low_value=90.0, cooldown_s=60.0, remind_every_s=3600.0
    ).subscription

    second = alice.set_subscription("NVDA", low_value=80.0).subscription

    assert second.subscription_id == first.subscription_id
    assert (second.high_value, second.low_value) == (150.0, 80.0)
    assert (second.cooldown_s, second.remind_every_s) == (60.0, 3600.0)
    assert second.rearm_percent == first.rearm_percent
    assert subscription_of(alice, "NVDA") == second


def test_set_subscription_zero_cooldown_and_reminder_switch_them_off(
    alice: StockAlertClient,
) -> None:
    """cooldown_s = 0 and remind_every_s = 0 leave those fields unset in the reply."""
    alice.set_subscription("NVDA", cooldown_s=60.0, remind_every_s=3600.0)

    sub = alice.set_subscription("NVDA", cooldown_s=0.0, remind_every_s=0.0).subscription

    assert not sub.HasField("cooldown_s")
    assert not sub.HasField("remind_every_s")


def test_set_subscription_clear_high_value_removes_the_high_threshold(
    alice: StockAlertClient,
) -> None:
    """clear_high_value unsets high_value, its side status, and keeps the low threshold."""
    sub = alice.set_subscription("AAPL", clear_high_value=True).subscription

    assert not sub.HasField("high_value")
    assert sub.high_status == pb.SIDE_STATUS_UNSPECIFIED
    assert sub.low_value == 100.0
    assert sub.low_status == pb.SIDE_STATUS_ARMED
    stored = subscription_of(alice, "AAPL")
    assert not stored.HasField("high_value")
    assert stored.low_value == 100.0


def test_remove_subscription_stops_watching_the_ticker(
    alice: StockAlertClient, store: MemoryStore
) -> None:
    """RemoveSubscription deletes the subscription and its alert states, nothing else."""
    aapl = subscription_of(alice, "AAPL").subscription_id

    assert alice.remove_subscription("aapl") == pb.RemoveSubscriptionReply()

    assert tickers_of(alice) == ["MSFT"]
    assert aapl not in store.subscriptions
    assert not [key for key in store.alert_states if key[0] == aapl]


def test_delete_user_removes_the_account_and_everything_about_it(
    alice: StockAlertClient, bob: StockAlertClient, store: MemoryStore
) -> None:
    """DeleteUser with a fresh login removes the user, their subscriptions and alert states."""
    alice_id = next(u for u in store.users.values() if u.email.value == ALICE).user_id

    assert alice.delete_user() == pb.DeleteUserReply()

    assert alice_id not in store.users
    assert all(s.user_id != alice_id for s in store.subscriptions.values())
    assert set(store.alert_states) == {
        key for key in store.alert_states if key[0] in store.subscriptions
    }
    assert tickers_of(bob) == ["TSLA"]


def test_get_latest_value_returns_the_newest_quote(
    alice: StockAlertClient, container: Any, clock: ManualClock
) -> None:
    """GetLatestValue answers the newest stored price of a watched ticker and its quote time."""
    feed(container, "AAPL", 150.0, 151.5, 149.25)

    reply = alice.latest("aapl")

    assert reply.ticker == "AAPL"
    assert reply.value == 149.25
    assert reply.quoted_at.ToDatetime(tzinfo=UTC) == clock.now() + timedelta(minutes=3)


def test_get_latest_value_with_an_empty_ticker_uses_the_only_subscription(
    bob: StockAlertClient, container: Any, clock: ManualClock
) -> None:
    """An empty ticker means the caller's only subscription."""
    feed(container, "TSLA", 250.0, 260.0)

    reply = bob.latest("")

    assert (reply.ticker, reply.value) == ("TSLA", 260.0)
    assert reply.quoted_at.ToDatetime(tzinfo=UTC) == clock.now() + timedelta(minutes=2)


def test_get_average_value_averages_the_newest_count_quotes(
    alice: StockAlertClient, container: Any
) -> None:
    """GetAverageValue is the mean of the newest `count` quotes, with the sample count."""
    feed(container, "AAPL", 100.0, 110.0, 130.0)

    reply = alice.average(2, "AAPL")

    assert (reply.ticker, reply.average_value, reply.samples) == ("AAPL", 120.0, 2)


def test_get_average_value_uses_fewer_samples_when_fewer_quotes_exist(
    bob: StockAlertClient, container: Any
) -> None:
    """A count above the number of stored quotes averages what exists (empty = only ticker)."""
    feed(container, "TSLA", 100.0, 110.0, 130.0)

    reply = bob.average(10, "")

    assert (reply.ticker, reply.average_value, reply.samples) == ("TSLA", 340.0 / 3, 3)


def test_list_subscriptions_reports_armed_sides_and_pending_tickers(
    alice: StockAlertClient,
) -> None:
    """Fresh subscriptions are ARMED on set sides, UNSPECIFIED on unset ones, ticker PENDING."""
    subs = alice.subscriptions().subscriptions

    assert [s.ticker for s in subs] == ["AAPL", "MSFT"]
    aapl, msft = subs
    assert (aapl.high_value, aapl.low_value) == (200.0, 100.0)
    assert aapl.high_status == pb.SIDE_STATUS_ARMED
    assert aapl.low_status == pb.SIDE_STATUS_ARMED
    assert aapl.ticker_status == pb.TICKER_STATUS_PENDING
    assert not msft.HasField("high_value")
    assert not msft.HasField("low_value")
    assert not msft.HasField("cooldown_s")
    assert not msft.HasField("remind_every_s")
    assert msft.high_status == pb.SIDE_STATUS_UNSPECIFIED
    assert msft.low_status == pb.SIDE_STATUS_UNSPECIFIED
    assert msft.rearm_percent == 1.0
    assert msft.ticker_status == pb.TICKER_STATUS_PENDING


def test_list_subscriptions_reports_a_fired_side_and_an_active_ticker_after_a_crossing(
    alice: StockAlertClient, container: Any
) -> None:
    """A price above high_value fires the HIGH side; the ticker with quotes is ACTIVE."""
    feed(container, "AAPL", 150.0, 201.0)

    aapl = subscription_of(alice, "AAPL")

    assert aapl.high_status == pb.SIDE_STATUS_FIRED
    assert aapl.low_status == pb.SIDE_STATUS_ARMED
    assert aapl.ticker_status == pb.TICKER_STATUS_ACTIVE
    assert subscription_of(alice, "MSFT").ticker_status == pb.TICKER_STATUS_PENDING


def test_list_notifications_lists_the_history_newest_first_as_sent(
    alice: StockAlertClient, container: Any, clock: ManualClock
) -> None:
    """Two crossings are listed newest first, each SENT with its price, threshold and times."""
    feed(container, "AAPL", 201.0, 99.0)

    notes = alice.notifications().notifications

    assert [(n.ticker, n.side, n.price, n.threshold) for n in notes] == [
        ("AAPL", pb.SIDE_LOW, 99.0, 100.0),
        ("AAPL", pb.SIDE_HIGH, 201.0, 200.0),
    ]
    assert all(n.kind == pb.NOTIFICATION_KIND_CROSSING for n in notes)
    assert all(n.status == pb.DELIVERY_STATUS_SENT for n in notes)
    assert all(n.attempts == 1 and n.last_error == "" for n in notes)
    assert all(n.sent_at.ToDatetime(tzinfo=UTC) == clock.now() for n in notes)
    assert [n.quoted_at.ToDatetime(tzinfo=UTC) for n in notes] == [
        clock.now() + timedelta(minutes=2),
        clock.now() + timedelta(minutes=1),
    ]
    assert len({n.notification_id for n in notes}) == 2
    # each its own quote's correlation id, the one its e-mail went out with
    mailed = {n.notification_id: n.correlation_id for n in container.delivery.mailer().sent}
    assert [n.correlation_id for n in notes] == [mailed[n.notification_id] for n in notes]
    assert len({n.correlation_id for n in notes}) == 2
    assert all(n.correlation_id for n in notes)


def test_a_deferred_notification_shows_its_error_and_next_attempt(
    alice: StockAlertClient, container: Any, clock: ManualClock
) -> None:
    """PENDING after a 421: the reply says why, how often it was tried and when it is next."""
    container.delivery.mailer().fail_next(MailTemporaryError("421 4.3.2 try later"))
    feed(container, "AAPL", 201.0)

    (note,) = alice.notifications().notifications

    assert note.status == pb.DELIVERY_STATUS_PENDING
    assert note.attempts == 1
    assert note.last_error == "421 4.3.2 try later"
    assert not note.HasField("sent_at")
    delay = RetryPolicy().delay_s(note.notification_id, 1)
    assert note.next_attempt_at.ToDatetime(tzinfo=UTC) == clock.now() + timedelta(seconds=delay)


def test_list_notifications_honours_the_limit(
    alice: StockAlertClient, bob: StockAlertClient, container: Any
) -> None:
    """limit = 1 answers only the newest notification; other users see none of them."""
    feed(container, "AAPL", 201.0, 99.0)

    (newest,) = alice.notifications(limit=1).notifications

    assert newest.side == pb.SIDE_LOW
    assert list(bob.notifications().notifications) == []


# ----- status codes --------------------------------------------------------------------------

# (call on Alice's client, the field the INVALID_ARGUMENT message must name)
INVALID_CALLS = [
    pytest.param(lambda c: c.register("not-an-email", GOOD_SECRET), "email", id="email"),
    pytest.param(lambda c: c.register("carol@example.com", "short"), "password", id="password"),
    pytest.param(
        lambda c: c.register("carol@example.com", GOOD_SECRET, [spec("AA PL")]),
        "subscriptions[0].ticker",
        id="spec-ticker",
    ),
    pytest.param(
        lambda c: c.register(
            "carol@example.com", GOOD_SECRET, [spec("AAPL"), spec("MSFT", high_value=-1.0)]
        ),
        "subscriptions[1].high_value",
        id="spec-high-value",
    ),
    pytest.param(
        lambda c: c.register("carol@example.com", GOOD_SECRET, [spec("AAPL"), spec("aapl")]),
        "subscriptions[1].ticker",
        id="spec-duplicate-ticker",
    ),
    pytest.param(
        lambda c: c.register("carol@example.com", GOOD_SECRET, request_id="   "),
        "request_id",
        id="blank-request-id",
    ),
    pytest.param(
        lambda c: c.set_subscription("AAPL", request_id="r" * 129),
        "request_id",
        id="long-request-id",
    ),
    pytest.param(lambda c: c.set_subscription("$$$"), "ticker", id="ticker"),
    pytest.param(
        lambda c: c.set_subscription("NVDA", high_value=float("nan")), "high_value", id="nan"
    ),
    pytest.param(lambda c: c.set_subscription("NVDA", low_value=0.0), "low_value", id="zero"),
    pytest.param(
        lambda c: c.set_subscription("AAPL", high_value=50.0), "high_value", id="high-below-low"
    ),
    pytest.param(
        lambda c: c.set_subscription("NVDA", rearm_percent=60.0), "rearm_percent", id="rearm"
    ),
    pytest.param(
        lambda c: c.set_subscription("NVDA", cooldown_s=-1.0), "cooldown_s", id="cooldown"
    ),
    pytest.param(
        lambda c: c.set_subscription("NVDA", remind_every_s=0.5),
        "remind_every_s",
        id="remind-every",
    ),
    pytest.param(
        lambda c: c.set_subscription("AAPL", high_value=300.0, clear_high_value=True),
        "clear_high_value",
        id="clear-and-set",
    ),
    pytest.param(lambda c: c.remove_subscription("AA PL"), "ticker", id="remove-ticker"),
    pytest.param(lambda c: c.latest(""), "ticker", id="latest-ambiguous"),
    pytest.param(lambda c: c.average(0, "AAPL"), "count", id="count-zero"),
    pytest.param(lambda c: c.average(10_001, "AAPL"), "count", id="count-too-big"),
    pytest.param(lambda c: c.notifications(limit=-1), "limit", id="limit-negative"),
    pytest.param(lambda c: c.notifications(limit=1001), "limit", id="limit-too-big"),
]


@pytest.mark.parametrize(("call", "field"), INVALID_CALLS)
def test_invalid_arguments_answer_invalid_argument_naming_the_field(
    alice: StockAlertClient, call: Callable[[StockAlertClient], Any], field: str
) -> None:
    """A malformed field is INVALID_ARGUMENT and the message starts with the field's name."""
    err = fails(lambda: call(alice))

    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.message.startswith(f"{field}:"), err.message


def test_a_rejected_subscription_spec_registers_no_user(
    anonymous: StockAlertClient, store: MemoryStore
) -> None:
    """A registration failing on its second spec leaves no user and no subscription behind."""
    err = fails(
        lambda: anonymous.register(ALICE, GOOD_SECRET, [spec("AAPL"), spec("MSFT", low_value=-2)])
    )

    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (store.users, store.subscriptions, store.alert_states) == ({}, {}, {})


@pytest.mark.parametrize("email", [ALICE, "  Alice@Example.COM "])
def test_registering_an_e_mail_twice_is_already_exists(
    alice: StockAlertClient, anonymous: StockAlertClient, store: MemoryStore, email: str
) -> None:
    """A second account for the same (normalised) e-mail is ALREADY_EXISTS naming it."""
    err = fails(lambda: anonymous.register(email, GOOD_SECRET))

    assert err.code == grpc.StatusCode.ALREADY_EXISTS
    assert ALICE in err.message
    assert len(store.users) == 1


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.latest("NVDA"), id="latest-unwatched"),
        pytest.param(lambda c: c.average(3, "NVDA"), id="average-unwatched"),
        pytest.param(lambda c: c.remove_subscription("NVDA"), id="remove-unwatched"),
        pytest.param(lambda c: c.latest("MSFT"), id="latest-no-quotes"),
        pytest.param(lambda c: c.average(3, "MSFT"), id="average-no-quotes"),
    ],
)
def test_unwatched_tickers_and_missing_quotes_are_not_found(
    alice: StockAlertClient, container: Any, call: Callable[[StockAlertClient], Any]
) -> None:
    """A ticker the caller does not watch, or one without quotes yet, is NOT_FOUND."""
    feed(container, "NVDA", 100.0)

    err = fails(lambda: call(alice))

    assert err.code == grpc.StatusCode.NOT_FOUND
    assert "NVDA" in err.message or "MSFT" in err.message


def test_value_queries_without_any_subscription_are_not_found(
    anonymous: StockAlertClient,
) -> None:
    """An empty ticker when the caller watches nothing is NOT_FOUND."""
    anonymous.register(ALICE, GOOD_SECRET)
    anonymous.login(ALICE, GOOD_SECRET)

    assert fails(lambda: anonymous.latest("")).code == grpc.StatusCode.NOT_FOUND
    assert fails(lambda: anonymous.average(1, "")).code == grpc.StatusCode.NOT_FOUND


def test_delete_user_with_a_login_older_than_ten_minutes_is_permission_denied(
    alice: StockAlertClient, clock: ManualClock, store: MemoryStore
) -> None:
    """DeleteUser needs a recent login: a valid 10 min + 1 s old token is PERMISSION_DENIED."""
    clock.advance(10 * 60 + 1)

    err = fails(alice.delete_user)

    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert "log in again" in err.message
    assert len(store.users) == 1
    assert tickers_of(alice) == ["AAPL", "MSFT"]  # the token itself is still valid

    alice.login(ALICE, GOOD_SECRET)
    alice.delete_user()

    assert store.users == {}


def test_delete_user_with_a_login_exactly_ten_minutes_old_is_allowed(
    alice: StockAlertClient, clock: ManualClock, store: MemoryStore
) -> None:
    """A login exactly 10 minutes old is still recent enough to delete the account."""
    clock.advance(10 * 60)

    alice.delete_user()

    assert store.users == {}


class BrokenUow:
    """A unit of work whose database is down: every transaction fails to start."""

    def __enter__(self) -> BrokenUow:
        raise Unavailable("database down")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def collect_events(self) -> Iterator[object]:
        return iter(())


@pytest.fixture
def broken() -> Iterator[tuple[Any, RunningServer]]:
    """A separate server whose write side is down; the read model still answers."""
    container = build_container(core__uow=providers.Factory(BrokenUow))
    running = start(container.bus(), "127.0.0.1:0")
    yield container, running
    stop(running, grace=0)
    container.reset_override()


def test_a_failing_unit_of_work_is_unavailable_for_commands_and_not_for_queries(
    broken: tuple[Any, RunningServer],
) -> None:
    """With the database down every command is UNAVAILABLE; queries read the read model."""
    container, running = broken
    store, clock = container.core.store(), container.core.clock()
    # Put a user straight into the store: registering needs the (broken) unit of work.
    email = Email(ALICE)
    store.users["u1"] = User("u1", email, InsecureFastHasher().hash(GOOD_SECRET), clock.now())
    store.user_by_email[email] = "u1"
    token, _ = container.auth.tokens().issue("u1", clock.now())

    with StockAlertClient(f"127.0.0.1:{running.port}", token=token, attempts=1) as client:
        calls: list[Callable[[], Any]] = [
            lambda: client.register(BOB, GOOD_SECRET),
            lambda: client.login(ALICE, GOOD_SECRET),
            lambda: client.set_subscription("AAPL", high_value=10.0),
            lambda: client.remove_subscription("AAPL"),
            client.delete_user,
        ]
        for call in calls:
            err = fails(call)
            assert err.code == grpc.StatusCode.UNAVAILABLE
            assert err.message == "database down"
        client.token = token
        assert list(client.subscriptions().subscriptions) == []
        assert list(client.notifications().notifications) == []
    assert list(store.users) == ["u1"]


OK = None
INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED

# (call with all-default request, answer with Alice's token, answer without a token)
EMPTY_CALLS = [
    pytest.param(
        lambda c, q, md: c.RegisterUser(pb.RegisterUserRequest(), metadata=md),
        INVALID,
        INVALID,
        id="RegisterUser",
    ),
    pytest.param(
        lambda c, q, md: c.LoginUser(pb.LoginUserRequest(), metadata=md),
        INVALID,
        INVALID,
        id="LoginUser",
    ),
    pytest.param(
        lambda c, q, md: c.SetSubscription(pb.SetSubscriptionRequest(), metadata=md),
        INVALID,
        UNAUTHENTICATED,
        id="SetSubscription",
    ),
    pytest.param(
        lambda c, q, md: c.RemoveSubscription(pb.RemoveSubscriptionRequest(), metadata=md),
        INVALID,
        UNAUTHENTICATED,
        id="RemoveSubscription",
    ),
    pytest.param(
        lambda c, q, md: c.DeleteUser(pb.DeleteUserRequest(), metadata=md),
        INVALID,
        UNAUTHENTICATED,
        id="DeleteUser",
    ),
    pytest.param(
        lambda c, q, md: q.GetLatestValue(pb.GetLatestValueRequest(), metadata=md),
        INVALID,
        UNAUTHENTICATED,
        id="GetLatestValue",
    ),
    pytest.param(
        lambda c, q, md: q.GetAverageValue(pb.GetAverageValueRequest(), metadata=md),
        INVALID,
        UNAUTHENTICATED,
        id="GetAverageValue",
    ),
    pytest.param(
        lambda c, q, md: q.ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=md),
        OK,
        UNAUTHENTICATED,
        id="ListSubscriptions",
    ),
    pytest.param(
        lambda c, q, md: q.ListNotifications(pb.ListNotificationsRequest(), metadata=md),
        OK,
        UNAUTHENTICATED,
        id="ListNotifications",
    ),
]


@pytest.mark.parametrize(("call", "with_token", "without_token"), EMPTY_CALLS)
@pytest.mark.parametrize("authenticated", [True, False], ids=["token", "no-token"])
def test_every_rpc_answers_an_all_defaults_request_with_a_documented_code(
    alice: StockAlertClient,
    commands: pb_grpc.CommandServiceStub,
    queries: pb_grpc.QueryServiceStub,
    call: Callable[..., Any],
    with_token: grpc.StatusCode | None,
    without_token: grpc.StatusCode,
    authenticated: bool,
) -> None:
    """An all-defaults request gets its specific answer (never UNKNOWN nor INTERNAL)."""
    metadata = bearer(alice.token or "") if authenticated else None
    expected = with_token if authenticated else without_token

    assert code_of(lambda: call(commands, queries, metadata)) == expected


# ----- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize("call", AUTHENTICATED_RPCS)
def test_every_authenticated_rpc_without_metadata_is_unauthenticated(
    alice: StockAlertClient,
    commands: pb_grpc.CommandServiceStub,
    queries: pb_grpc.QueryServiceStub,
    store: MemoryStore,
    call: Callable[..., Any],
) -> None:
    """No authorization metadata is UNAUTHENTICATED, and the call changes nothing."""
    before = store.snapshot()

    err = rpc_error(lambda: call(commands, queries, None))

    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization" in (err.details() or "")
    assert store.snapshot() == before


@pytest.mark.parametrize("value", ["Basic x", "Bearer", "Bearer  ", "bearer", "Token abc"])
@pytest.mark.parametrize("call", AUTHENTICATED_RPCS)
def test_malformed_authorization_metadata_is_unauthenticated(
    alice: StockAlertClient,
    commands: pb_grpc.CommandServiceStub,
    queries: pb_grpc.QueryServiceStub,
    call: Callable[..., Any],
    value: str,
) -> None:
    """Metadata that is not `Bearer <token>` is UNAUTHENTICATED."""
    err = rpc_error(lambda: call(commands, queries, [("authorization", value)]))

    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("a.b.c", id="three-garbage-segments"),
        pytest.param(JwtTokens(OTHER_SECRET).issue("id1", ManualClock().now())[0], id="other-key"),
    ],
)
@pytest.mark.parametrize("call", AUTHENTICATED_RPCS)
def test_forged_or_garbage_tokens_are_unauthenticated(
    alice: StockAlertClient,
    commands: pb_grpc.CommandServiceStub,
    queries: pb_grpc.QueryServiceStub,
    store: MemoryStore,
    call: Callable[..., Any],
    token: str,
) -> None:
    """A token that is not a JWT signed with the server's secret is UNAUTHENTICATED."""
    assert "id1" in store.users  # the forged token names Alice's real user id

    err = rpc_error(lambda: call(commands, queries, bearer(token)))

    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.details() == "invalid token"
    assert tickers_of(alice) == ["AAPL", "MSFT"]


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": "tomorrow"}, id="text-exp"),
        pytest.param({"exp": 10**20}, id="exp-out-of-range"),
        pytest.param({"iat": "yesterday"}, id="text-iat"),
        pytest.param({"iat": [1]}, id="list-iat"),
    ],
)
def test_a_correctly_signed_token_with_malformed_time_claims_is_unauthenticated(
    alice: StockAlertClient, queries: pb_grpc.QueryServiceStub, claims: dict[str, Any]
) -> None:
    """A token whose exp or iat is not a usable time is invalid: UNAUTHENTICATED, not INTERNAL."""
    issued = int(ManualClock().now().timestamp())
    payload = {"sub": "id1", "iss": "stockalert", "iat": issued, "exp": issued + 3600, **claims}
    token = jwt.encode(payload, in_memory_config()["auth_secret"], algorithm="HS256")

    err = rpc_error(
        lambda: queries.ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=bearer(token))
    )

    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_token_expires_twelve_hours_after_login(
    alice: StockAlertClient, clock: ManualClock
) -> None:
    """A token works until 12 h after login and is UNAUTHENTICATED from 12 h + 1 s on."""
    clock.advance(12 * 3600 - 1)
    assert tickers_of(alice) == ["AAPL", "MSFT"]

    clock.advance(2)
    err = fails(alice.subscriptions)

    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in err.message


def test_a_deleted_users_token_is_unauthenticated(
    alice: StockAlertClient, store: MemoryStore
) -> None:
    """After DeleteUser the (validly signed, unexpired) token no longer authenticates."""
    token = alice.token
    alice.delete_user()

    # Every RPC of a signed-in user: the servicers verify the token only, and the user's
    # absence in the query or command itself answers UNAUTHENTICATED (one read fewer).
    calls = (
        alice.subscriptions,
        alice.notifications,
        lambda: alice.latest("AAPL"),
        alice.latest,
        lambda: alice.average(3, "AAPL"),
        lambda: alice.set_subscription("X"),
        lambda: alice.set_subscription("AAPL", high_value=500.0),
        lambda: alice.remove_subscription("AAPL"),
        alice.delete_user,
    )
    for call in calls:
        err = fails(call)
        assert err.code == grpc.StatusCode.UNAUTHENTICATED
        assert err.message == "the account of this token no longer exists"
    assert alice.token == token
    assert store.users == {}
    assert store.subscriptions == {}


def test_wrong_password_and_unknown_e_mail_get_the_same_answer(
    alice: StockAlertClient, anonymous: StockAlertClient
) -> None:
    """A wrong password and an unknown e-mail are both UNAUTHENTICATED with the same message."""
    wrong_password = fails(lambda: anonymous.login(ALICE, "not the password"))
    unknown_email = fails(lambda: anonymous.login("nobody@example.com", GOOD_SECRET))

    assert wrong_password.code == unknown_email.code == grpc.StatusCode.UNAUTHENTICATED
    assert wrong_password.message == unknown_email.message
    assert anonymous.token is None


def test_a_token_acts_for_its_own_user_only(
    alice: StockAlertClient, bob: StockAlertClient, store: MemoryStore
) -> None:
    """Bob's token lists Bob's subscriptions, and Bob cannot remove Alice's ticker."""
    assert tickers_of(bob) == ["TSLA"]
    before = store.snapshot(without=("requests",))  # the failure's reply is stored

    err = fails(lambda: bob.remove_subscription("AAPL"))

    assert err.code == grpc.StatusCode.NOT_FOUND
    assert store.snapshot(without=("requests",)) == before
    assert tickers_of(alice) == ["AAPL", "MSFT"]
    assert fails(lambda: bob.latest("AAPL")).code == grpc.StatusCode.NOT_FOUND


# ----- at most once --------------------------------------------------------------------------


def test_register_user_twice_with_one_request_id_creates_one_user(
    anonymous: StockAlertClient, store: MemoryStore
) -> None:
    """A retried RegisterUser answers the first reply and creates the user once."""
    first = anonymous.register(ALICE, GOOD_SECRET, [spec("AAPL")], request_id="reg-1")
    second = anonymous.register(ALICE, GOOD_SECRET, [spec("AAPL")], request_id="reg-1")

    assert second == first
    assert list(store.users) == [first.user_id]
    assert len(store.subscriptions) == 1


def test_set_subscription_twice_with_one_request_id_changes_state_once(
    alice: StockAlertClient, store: MemoryStore
) -> None:
    """A retried SetSubscription creates one subscription and answers identical replies."""
    before = len(store.subscriptions)

    first = alice.set_subscription("NVDA", request_id="set-1", high_value=150.0)
    second = alice.set_subscription("NVDA", request_id="set-1", high_value=150.0)

    assert second == first
    assert len(store.subscriptions) == before + 1
    assert tickers_of(alice) == ["AAPL", "MSFT", "NVDA"]


def test_a_stored_failure_is_replayed_for_the_same_request_id(
    alice: StockAlertClient, store: MemoryStore
) -> None:
    """A retry of a failed command answers the stored failure even after the state changed."""
    first = fails(lambda: alice.remove_subscription("NVDA", request_id="rm-1"))
    alice.set_subscription("NVDA", high_value=150.0)

    replay = fails(lambda: alice.remove_subscription("NVDA", request_id="rm-1"))

    assert first.code == replay.code == grpc.StatusCode.NOT_FOUND
    assert replay.message == first.message
    assert "NVDA" in tickers_of(alice)
    assert any(s.ticker.value == "NVDA" for s in store.subscriptions.values())


def test_a_request_id_reused_for_a_different_request_is_invalid_argument(
    alice: StockAlertClient,
) -> None:
    """The same request id with another payload is INVALID_ARGUMENT naming request_id."""
    alice.set_subscription("NVDA", request_id="set-1", high_value=150.0)

    err = fails(lambda: alice.set_subscription("NVDA", request_id="set-1", high_value=160.0))

    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.message.startswith("request_id:")
    assert subscription_of(alice, "NVDA").high_value == 150.0


# ----- overlong input ------------------------------------------------------------------------

LONG_TICKER = "\N{GRINNING FACE}" * 2000


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda c: c.set_subscription(LONG_TICKER), "ticker", id="SetSubscription"),
        pytest.param(
            lambda c: c.remove_subscription(LONG_TICKER), "ticker", id="RemoveSubscription"
        ),
        pytest.param(lambda c: c.latest(LONG_TICKER), "ticker", id="GetLatestValue"),
        pytest.param(
            lambda c: c.register("carol@example.com", GOOD_SECRET, [spec(LONG_TICKER)]),
            "subscriptions[0].ticker",
            id="RegisterUser",
        ),
    ],
)
def test_an_overlong_ticker_is_invalid_argument_naming_the_field(
    alice: StockAlertClient, call: Callable[[StockAlertClient], Any], field: str
) -> None:
    """A 2000-character ticker is INVALID_ARGUMENT naming the field, whatever its characters."""
    err = fails(lambda: call(alice))

    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err.message
    assert err.message.startswith(f"{field}:")


# ----- health and reflection -----------------------------------------------------------------


@pytest.mark.parametrize("service", ["", COMMAND_SERVICE, QUERY_SERVICE])
def test_health_reports_serving(channel: grpc.Channel, service: str) -> None:
    """The standard health service answers SERVING for the server and both services."""
    stub: Any = health_pb2_grpc.HealthStub(channel)  # its stub file declares no RPC methods

    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)

    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_both_services(channel: grpc.Channel) -> None:
    """Server reflection lists CommandService and QueryService."""
    # types-grpcio-reflection types the RPC as binascii.Incomplete (an exception class)
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))

    names = {service.name for service in response.list_services_response.service}
    assert {COMMAND_SERVICE, QUERY_SERVICE} <= names

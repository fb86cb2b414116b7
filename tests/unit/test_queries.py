"""Queries through the message bus, edge to edge over the in-memory adapters."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta

import pytest

from stockalert.adapters.memory.fakes import ManualClock
from stockalert.adapters.memory.storage import MemoryStore
from stockalert.domain.commands import RecordQuotes, SetSubscription, SubscriptionSpec
from stockalert.domain.errors import ErrorCode, InvalidArgument, NotFound
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import Quote, SideStatus, Ticker, TickerStatus
from stockalert.domain.queries import (
    DEFAULT_NOTIFICATION_LIMIT,
    GetAverageValue,
    GetLatestValue,
    ListNotifications,
    ListSubscriptions,
    Query,
)
from stockalert.domain.views import AverageValue, LatestValue, SubscriptionView
from tests.unit.helpers import notifications, quote_at, register, subscriptions

# A value query about `ticker` for a user: both value queries obey the same ticker rules.
MakeQuery = Callable[[str, str], Query]
VALUE_QUERIES = [
    pytest.param(GetLatestValue, id="latest"),
    pytest.param(lambda user_id, ticker: GetAverageValue(user_id, 5, ticker), id="average"),
]


# ----- helpers -----------------------------------------------------------------------------


def record(bus: MessageBus, clock: ManualClock, seconds: float, price: float, ticker: str) -> None:
    """Record one quote (see `quote_at`), which must be stored."""
    assert bus.handle(RecordQuotes((quote_at(clock, seconds, price, ticker),))) == 1


def record_series(
    bus: MessageBus, clock: ManualClock, prices: list[float], ticker: str = "AAPL"
) -> None:
    for second, price in enumerate(prices, start=1):
        record(bus, clock, second, price, ticker)


def cross_repeatedly(bus: MessageBus, clock: ManualClock, times: int, ticker: str = "AAPL") -> None:
    """Alternate above 100 and back well inside, so each cycle raises one notification."""
    for cycle in range(times):
        record(bus, clock, 2 * cycle + 1, 101 + cycle, ticker)
        record(bus, clock, 2 * cycle + 2, 50, ticker)


@pytest.fixture
def alice(bus: MessageBus) -> str:
    """A user watching AAPL only (high 100)."""
    return register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))


# ----- GetLatestValue / GetAverageValue -------------------------------------------------------


def test_latest_value_is_the_newest_quote_by_quote_time(
    bus: MessageBus, clock: ManualClock, alice: str
) -> None:
    """GetLatestValue answers the quote with the latest quoted_at, whatever the arrival order."""
    newest = Quote(Ticker("AAPL"), 42.5, clock.now() + timedelta(seconds=20))
    older = Quote(Ticker("AAPL"), 40.0, clock.now() + timedelta(seconds=10))
    bus.handle(RecordQuotes((newest, older)))

    latest = bus.ask(GetLatestValue(alice, "AAPL"))

    assert latest == LatestValue("AAPL", 42.5, newest.quoted_at)


def test_value_queries_accept_a_lower_case_ticker(
    bus: MessageBus, clock: ManualClock, alice: str
) -> None:
    """The ticker of a value query is normalised like the one of a subscription."""
    record(bus, clock, 1, 42.0, "AAPL")

    latest = bus.ask(GetLatestValue(alice, " aapl "))

    assert isinstance(latest, LatestValue)
    assert (latest.ticker, latest.value) == ("AAPL", 42.0)


@pytest.mark.parametrize(
    ("count", "average", "samples"),
    [
        pytest.param(1, 40.0, 1, id="newest-only"),
        pytest.param(2, 35.0, 2, id="newest-two"),
        pytest.param(4, 25.0, 4, id="all"),
        pytest.param(10, 25.0, 4, id="more-than-stored"),
        pytest.param(10_000, 25.0, 4, id="maximum-count"),
    ],
)
def test_average_is_the_mean_of_the_newest_count_quotes(
    bus: MessageBus, clock: ManualClock, alice: str, count: int, average: float, samples: int
) -> None:
    """GetAverageValue averages the newest `count` quotes (fewer if fewer) and says how many."""
    record_series(bus, clock, [10.0, 20.0, 30.0, 40.0])

    reply = bus.ask(GetAverageValue(alice, count, "AAPL"))

    assert reply == AverageValue("AAPL", average, samples)


@pytest.mark.parametrize("count", [0, -1, 10_001])
def test_rejects_average_count_outside_one_to_ten_thousand(
    bus: MessageBus, clock: ManualClock, alice: str, count: int
) -> None:
    """A count outside 1..10000 is INVALID_ARGUMENT on "count"."""
    record_series(bus, clock, [10.0, 20.0])

    with pytest.raises(InvalidArgument) as excinfo:
        bus.ask(GetAverageValue(alice, count, "AAPL"))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == "count"


@pytest.mark.parametrize("make_query", VALUE_QUERIES)
def test_empty_ticker_means_the_users_only_subscription(
    bus: MessageBus, clock: ManualClock, alice: str, make_query: MakeQuery
) -> None:
    """With an empty ticker a value query is about the user's single watched ticker."""
    record(bus, clock, 1, 42.0, "AAPL")

    reply = bus.ask(make_query(alice, ""))

    assert isinstance(reply, LatestValue | AverageValue)
    assert reply.ticker == "AAPL"


@pytest.mark.parametrize("make_query", VALUE_QUERIES)
def test_empty_ticker_is_not_found_when_the_user_watches_nothing(
    bus: MessageBus, clock: ManualClock, make_query: MakeQuery
) -> None:
    """An empty ticker from a user without subscriptions is NOT_FOUND on "ticker"."""
    user_id = register(bus, "carol@example.com")
    record(bus, clock, 1, 42.0, "AAPL")

    with pytest.raises(NotFound) as excinfo:
        bus.ask(make_query(user_id, ""))

    assert excinfo.value.code is ErrorCode.NOT_FOUND
    assert excinfo.value.field == "ticker"


@pytest.mark.parametrize("make_query", VALUE_QUERIES)
def test_empty_ticker_is_ambiguous_when_the_user_watches_several(
    bus: MessageBus, clock: ManualClock, make_query: MakeQuery
) -> None:
    """An empty ticker from a user watching several tickers is INVALID_ARGUMENT on "ticker"."""
    user_id = register(bus, "dave@example.com", SubscriptionSpec("AAPL"), SubscriptionSpec("MSFT"))
    record(bus, clock, 1, 42.0, "AAPL")
    record(bus, clock, 2, 420.0, "MSFT")

    with pytest.raises(InvalidArgument) as excinfo:
        bus.ask(make_query(user_id, "  "))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == "ticker"


@pytest.mark.parametrize("make_query", VALUE_QUERIES)
def test_a_ticker_the_user_does_not_watch_is_not_found(
    bus: MessageBus, clock: ManualClock, alice: str, make_query: MakeQuery
) -> None:
    """Asking about a ticker with quotes that the user does not watch is NOT_FOUND on "ticker"."""
    register(bus, "bob@example.com", SubscriptionSpec("MSFT"))
    record(bus, clock, 1, 420.0, "MSFT")

    with pytest.raises(NotFound) as excinfo:
        bus.ask(make_query(alice, "MSFT"))

    assert excinfo.value.code is ErrorCode.NOT_FOUND
    assert excinfo.value.field == "ticker"


@pytest.mark.parametrize("make_query", VALUE_QUERIES)
def test_a_watched_ticker_without_quotes_is_not_found(
    bus: MessageBus, alice: str, make_query: MakeQuery
) -> None:
    """A watched ticker with no quote collected yet is NOT_FOUND on "ticker"."""
    with pytest.raises(NotFound) as excinfo:
        bus.ask(make_query(alice, "AAPL"))

    assert excinfo.value.code is ErrorCode.NOT_FOUND
    assert excinfo.value.field == "ticker"


@pytest.mark.parametrize("make_query", VALUE_QUERIES)
def test_rejects_a_malformed_ticker_in_a_value_query(
    bus: MessageBus, alice: str, make_query: MakeQuery
) -> None:
    """A malformed ticker in a value query is INVALID_ARGUMENT on "ticker"."""
    with pytest.raises(InvalidArgument) as excinfo:
        bus.ask(make_query(alice, "AA PL"))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == "ticker"


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(GetLatestValue("nobody", "AAPL"), id="latest"),
        pytest.param(GetAverageValue("nobody", 5, "AAPL"), id="average"),
        pytest.param(ListSubscriptions("nobody"), id="subscriptions"),
        pytest.param(ListNotifications("nobody"), id="notifications"),
    ],
)
def test_queries_by_an_unknown_user_are_not_found(
    bus: MessageBus, alice: str, query: Query
) -> None:
    """Every query naming a user id that does not exist is NOT_FOUND on "user_id"."""
    with pytest.raises(NotFound) as excinfo:
        bus.ask(query)

    assert excinfo.value.code is ErrorCode.NOT_FOUND
    assert excinfo.value.field == "user_id"


# ----- ListSubscriptions ----------------------------------------------------------------------


def test_list_subscriptions_is_sorted_by_ticker_with_side_statuses(bus: MessageBus) -> None:
    """ListSubscriptions returns the user's subscriptions by ticker, a status per set side."""
    user_id = register(
        bus,
        "erin@example.com",
        SubscriptionSpec("MSFT", low_value=300),
        SubscriptionSpec("AAPL", high_value=200, low_value=100),
        SubscriptionSpec("GOOG"),
    )

    views = subscriptions(bus, user_id)

    assert [(v.ticker, v.high_status, v.low_status) for v in views] == [
        ("AAPL", SideStatus.ARMED, SideStatus.ARMED),
        ("GOOG", None, None),
        ("MSFT", None, SideStatus.ARMED),
    ]


def test_list_subscriptions_shows_a_fired_side(
    bus: MessageBus, clock: ManualClock, alice: str
) -> None:
    """After a crossing the crossed side is listed FIRED."""
    record(bus, clock, 1, 101, "AAPL")

    (view,) = subscriptions(bus, alice)

    assert view.high_status is SideStatus.FIRED


def test_ticker_status_is_pending_before_any_quote_and_active_after(
    bus: MessageBus, clock: ManualClock
) -> None:
    """A ticker without quotes is PENDING; it turns ACTIVE with its first stored quote."""
    user_id = register(bus, "erin@example.com", SubscriptionSpec("AAPL"), SubscriptionSpec("MSFT"))
    before = subscriptions(bus, user_id)

    record(bus, clock, 1, 42.0, "AAPL")
    after = subscriptions(bus, user_id)

    assert [(v.ticker, v.ticker_status) for v in before] == [
        ("AAPL", TickerStatus.PENDING),
        ("MSFT", TickerStatus.PENDING),
    ]
    assert [(v.ticker, v.ticker_status) for v in after] == [
        ("AAPL", TickerStatus.ACTIVE),
        ("MSFT", TickerStatus.PENDING),
    ]


def test_list_subscriptions_shows_only_the_callers_subscriptions(
    bus: MessageBus, alice: str
) -> None:
    """Another user's subscriptions never appear in a user's list."""
    bob = register(bus, "bob@example.com", SubscriptionSpec("MSFT"), SubscriptionSpec("AAPL"))

    alice_views = subscriptions(bus, alice)
    bob_views = subscriptions(bus, bob)

    assert [v.ticker for v in alice_views] == ["AAPL"]
    assert [v.ticker for v in bob_views] == ["AAPL", "MSFT"]
    assert {v.subscription_id for v in alice_views}.isdisjoint(v.subscription_id for v in bob_views)


def test_list_subscriptions_agrees_with_the_set_subscription_reply(
    bus: MessageBus, alice: str
) -> None:
    """The listed view equals the view SetSubscription answered."""
    reply = bus.handle(SetSubscription("s1", alice, "TSLA", high_value=300, remind_every_s=60))

    views = subscriptions(bus, alice)

    assert isinstance(reply, SubscriptionView)
    assert reply in views


# ----- ListNotifications ----------------------------------------------------------------------


def test_list_notifications_is_newest_first(
    bus: MessageBus, clock: ManualClock, alice: str
) -> None:
    """ListNotifications orders the user's alerts by quote time, newest first."""
    cross_repeatedly(bus, clock, 3)

    records = notifications(bus, alice)

    assert [r.notification.price for r in records] == [103, 102, 101]
    quoted = [r.notification.quoted_at for r in records]
    assert quoted == sorted(quoted, reverse=True)


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        pytest.param(1, 1, id="one"),
        pytest.param(3, 3, id="three"),
        pytest.param(0, DEFAULT_NOTIFICATION_LIMIT, id="zero-means-default"),
        pytest.param(1000, DEFAULT_NOTIFICATION_LIMIT + 5, id="maximum"),
    ],
)
def test_list_notifications_respects_the_limit(
    bus: MessageBus, clock: ManualClock, alice: str, limit: int, expected: int
) -> None:
    """At most `limit` notifications are listed (the newest); 0 means the default limit."""
    cross_repeatedly(bus, clock, DEFAULT_NOTIFICATION_LIMIT + 5)
    everything = notifications(bus, alice, 1000)

    records = notifications(bus, alice, limit)

    assert len(records) == expected
    assert records == everything[:expected]


@pytest.mark.parametrize("limit", [-1, 1001])
def test_rejects_a_notification_limit_out_of_range(bus: MessageBus, alice: str, limit: int) -> None:
    """A negative (or above-maximum) limit is INVALID_ARGUMENT on "limit"."""
    with pytest.raises(InvalidArgument) as excinfo:
        bus.ask(ListNotifications(alice, limit))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == "limit"


def test_list_notifications_shows_only_the_callers_own(
    bus: MessageBus, clock: ManualClock, alice: str
) -> None:
    """Two users crossing on the same quote each see only their own notification."""
    bob = register(bus, "bob@example.com", SubscriptionSpec("AAPL", high_value=100))
    carol = register(bus, "carol@example.com", SubscriptionSpec("AAPL", high_value=500))
    record(bus, clock, 1, 101, "AAPL")

    alice_records = notifications(bus, alice)
    bob_records = notifications(bus, bob)

    assert [r.notification.user_id for r in alice_records] == [alice]
    assert [r.notification.user_id for r in bob_records] == [bob]
    assert notifications(bus, carol) == []


# ----- queries are read-only ------------------------------------------------------------------


def every_kind_of_query(user_id: str) -> list[Query]:
    """Queries of every type, answered and rejected ones alike."""
    return [
        GetLatestValue(user_id),
        GetLatestValue(user_id, "AAPL"),
        GetLatestValue(user_id, "MSFT"),
        GetLatestValue(user_id, "AA PL"),
        GetAverageValue(user_id, 3, "AAPL"),
        GetAverageValue(user_id, 0, "AAPL"),
        ListSubscriptions(user_id),
        ListNotifications(user_id),
        ListNotifications(user_id, 2),
        ListNotifications(user_id, -1),
        ListSubscriptions("nobody"),
    ]


def test_queries_never_change_state(
    bus: MessageBus, clock: ManualClock, store: MemoryStore, alice: str
) -> None:
    """Answering any query, successful or rejected, leaves every stored table as it was."""
    cross_repeatedly(bus, clock, 2)
    record(bus, clock, 100, 101, "AAPL")
    before = store.snapshot()

    for query in every_kind_of_query(alice):
        with contextlib.suppress(InvalidArgument, NotFound):
            bus.ask(query)

    assert store.snapshot() == before

"""Accounts through the message bus: registration, subscriptions (set, remove, validation,
threshold order, re-arming on change) and account deletion (`domain/handlers/accounts.py`)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from stockalert.adapters.memory.fakes import ManualClock, MemoryMailer
from stockalert.adapters.memory.storage import MemoryStore
from stockalert.domain.commands import DeleteUser, RegisterUser, SetSubscription, SubscriptionSpec
from stockalert.domain.errors import (
    AlreadyExists,
    DomainError,
    ErrorCode,
    InvalidArgument,
    NotFound,
)
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import Email, SideStatus
from stockalert.domain.queries import GetLatestValue, ListNotifications, ListSubscriptions
from stockalert.domain.views import Done, UserRegistered
from tests.unit.helpers import (
    GOOD_SECRET,
    only_subscription,
    record,
    register,
    set_sub,
    subscriptions,
)

BAD_EMAILS = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("alice.example.com", id="no-at"),
    pytest.param("alice smith@example.com", id="space-in-local-part"),
    pytest.param("alice@exa mple.com", id="space-in-domain"),
    pytest.param("a@b", id="no-top-level-domain"),
    pytest.param("a@@b.com", id="two-ats"),
    pytest.param("a@b.com\r\nBcc: x@y.com", id="header-injection"),
]

BAD_TICKERS = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("AA PL", id="space"),
    pytest.param("TOOLONGTICKERSYMBOL1", id="too-long"),
    pytest.param("$$$", id="symbols"),
]

BAD_PRICES = [
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="plus-inf"),
    pytest.param(-math.inf, id="minus-inf"),
    pytest.param(0, id="zero"),
    pytest.param(-1.5, id="negative"),
]

BAD_REARM_PERCENTS = [
    pytest.param(-0.1, id="below-0"),
    pytest.param(50.1, id="above-50"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
]


def each_value(params: list[Any]) -> list[tuple[str | None, Any]]:
    """(id, value) of each value of one-value `pytest.param`s (typed as test input: Any)."""
    return [(p.id, value) for p in params for value in p.values]


# ----- registration ---------------------------------------------------------------------------


def test_registration_returns_the_id_of_the_stored_user(
    bus: MessageBus, store: MemoryStore
) -> None:
    """A successful RegisterUser replies UserRegistered carrying the new user's id."""
    reply = bus.handle(RegisterUser("r1", "alice@example.com", GOOD_SECRET))

    assert isinstance(reply, UserRegistered)
    assert reply.user_id
    assert list(store.users) == [reply.user_id]


def test_registration_normalises_the_email_to_lower_case(
    bus: MessageBus, store: MemoryStore
) -> None:
    """The stored e-mail is the trimmed, lower-cased form of what the user typed."""
    user_id = register(bus, "  Alice.Smith@Example.COM ")

    assert store.users[user_id].email == Email("alice.smith@example.com")
    assert store.user_by_email == {Email("alice.smith@example.com"): user_id}


def test_registration_stores_initial_subscriptions_with_upper_cased_tickers(
    bus: MessageBus,
) -> None:
    """Subscription specs given at registration become subscriptions, tickers upper-cased."""
    user_id = register(
        bus,
        "alice@example.com",
        SubscriptionSpec("msft", high_value=400),
        SubscriptionSpec(" aapl ", high_value=200, low_value=100, rearm_percent=2.5),
    )

    views = subscriptions(bus, user_id)

    assert [(v.ticker, v.high_value, v.low_value, v.rearm_percent) for v in views] == [
        ("AAPL", 200.0, 100.0, 2.5),
        ("MSFT", 400.0, None, 1.0),
    ]
    assert [(v.high_status, v.low_status) for v in views] == [
        (SideStatus.ARMED, SideStatus.ARMED),
        (SideStatus.ARMED, None),
    ]


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_rejects_registration_with_malformed_email(
    bus: MessageBus, store: MemoryStore, email: str
) -> None:
    """A malformed e-mail (incl. header injection) is INVALID_ARGUMENT on "email"; no user."""
    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(RegisterUser("r1", email, GOOD_SECRET))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == "email"
    assert store.users == {}
    assert store.user_by_email == {}


@pytest.mark.parametrize("password", ["", "short", "1234567"])
def test_rejects_registration_with_password_shorter_than_eight(
    bus: MessageBus, store: MemoryStore, password: str
) -> None:
    """A password under 8 characters is INVALID_ARGUMENT on "password"; no user is stored."""
    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(RegisterUser("r1", "alice@example.com", password))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == "password"
    assert store.users == {}


@pytest.mark.parametrize("request_id", ["", "   "])
def test_rejects_registration_with_empty_request_id(
    bus: MessageBus, store: MemoryStore, request_id: str
) -> None:
    """An empty request id is INVALID_ARGUMENT on "request_id"; not even a reply is stored."""
    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(RegisterUser(request_id, "alice@example.com", GOOD_SECRET))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == "request_id"
    assert store.users == {}
    assert store.requests == {}


REGISTRATION_SPEC_ERRORS = [
    *[
        pytest.param((SubscriptionSpec(t),), "subscriptions[0].ticker", id=f"ticker-{case}")
        for case, t in each_value(BAD_TICKERS)
    ],
    *[
        pytest.param(
            (SubscriptionSpec("AAPL"), SubscriptionSpec("MSFT", high_value=v)),
            "subscriptions[1].high_value",
            id=f"high-{case}",
        )
        for case, v in each_value(BAD_PRICES)
    ],
    *[
        pytest.param(
            (SubscriptionSpec("AAPL", low_value=v),),
            "subscriptions[0].low_value",
            id=f"low-{case}",
        )
        for case, v in each_value(BAD_PRICES)
    ],
    *[
        pytest.param(
            (SubscriptionSpec("AAPL", rearm_percent=v),),
            "subscriptions[0].rearm_percent",
            id=f"rearm-{case}",
        )
        for case, v in each_value(BAD_REARM_PERCENTS)
    ],
    pytest.param(
        (SubscriptionSpec("AAPL"), SubscriptionSpec("AAPL")),
        "subscriptions[1].ticker",
        id="duplicate-ticker",
    ),
    pytest.param(
        (SubscriptionSpec("aapl"), SubscriptionSpec(" AAPL ")),
        "subscriptions[1].ticker",
        id="duplicate-ticker-after-normalising",
    ),
    pytest.param(
        (SubscriptionSpec("AAPL", high_value=100, low_value=100),),
        "subscriptions[0].high_value",
        id="high-equal-low",
    ),
    pytest.param(
        (SubscriptionSpec("AAPL", high_value=90, low_value=100),),
        "subscriptions[0].high_value",
        id="high-below-low",
    ),
]


@pytest.mark.parametrize(("specs", "field"), REGISTRATION_SPEC_ERRORS)
def test_rejects_registration_with_invalid_subscription_spec(
    bus: MessageBus, store: MemoryStore, specs: tuple[SubscriptionSpec, ...], field: str
) -> None:
    """An invalid initial subscription is INVALID_ARGUMENT naming subscriptions[i].<field>."""
    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(RegisterUser("r1", "alice@example.com", GOOD_SECRET, specs))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == field
    assert store.users == {}
    assert store.subscriptions == {}
    assert store.alert_states == {}


def test_failed_registration_with_invalid_second_spec_stores_no_user_and_no_subscription(
    bus: MessageBus, store: MemoryStore
) -> None:
    """A RegisterUser whose second spec is invalid leaves nothing half-written."""
    specs = (SubscriptionSpec("AAPL", high_value=200), SubscriptionSpec("MSFT", low_value=-1))

    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(RegisterUser("r1", "alice@example.com", GOOD_SECRET, specs))

    assert excinfo.value.field == "subscriptions[1].low_value"
    assert store.snapshot(without=("requests",)) == MemoryStore().snapshot(without=("requests",))


@pytest.mark.parametrize(
    "second_email", ["alice@example.com", "ALICE@EXAMPLE.COM", " Alice@Example.com "]
)
def test_rejects_registration_of_an_already_registered_email_in_any_case(
    bus: MessageBus, store: MemoryStore, second_email: str
) -> None:
    """Registering an e-mail that exists (any case) is ALREADY_EXISTS; the first user stays."""
    first_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=200))
    before = store.snapshot(without=("requests",))

    with pytest.raises(AlreadyExists) as excinfo:
        bus.handle(
            RegisterUser("r-second", second_email, "another password", (SubscriptionSpec("MSFT"),))
        )

    assert excinfo.value.code is ErrorCode.ALREADY_EXISTS
    assert excinfo.value.field == "email"
    assert store.snapshot(without=("requests",)) == before
    assert list(store.users) == [first_id]


# ----- SetSubscription validation -------------------------------------------------------------


SET_SUBSCRIPTION_ERRORS = [
    *[
        pytest.param({"ticker": t}, "ticker", id=f"ticker-{p.id}")
        for p in BAD_TICKERS
        for t in p.values
    ],
    *[
        pytest.param({"high_value": v}, "high_value", id=f"high-{p.id}")
        for p in BAD_PRICES
        for v in p.values
    ],
    *[
        pytest.param({"low_value": v}, "low_value", id=f"low-{p.id}")
        for p in BAD_PRICES
        for v in p.values
    ],
    *[
        pytest.param({"rearm_percent": v}, "rearm_percent", id=f"rearm-{p.id}")
        for p in BAD_REARM_PERCENTS
        for v in p.values
    ],
    pytest.param({"cooldown_s": -1}, "cooldown_s", id="cooldown-negative"),
    pytest.param({"cooldown_s": -0.001}, "cooldown_s", id="cooldown-slightly-negative"),
    pytest.param({"cooldown_s": math.nan}, "cooldown_s", id="cooldown-nan"),
    pytest.param({"remind_every_s": 0.001}, "remind_every_s", id="remind-tiny"),
    pytest.param({"remind_every_s": 0.5}, "remind_every_s", id="remind-half-second"),
    pytest.param({"remind_every_s": 0.999}, "remind_every_s", id="remind-just-below-1"),
    pytest.param({"remind_every_s": -1}, "remind_every_s", id="remind-negative"),
    pytest.param({"request_id": ""}, "request_id", id="request-id-empty"),
    pytest.param({"request_id": "  "}, "request_id", id="request-id-blank"),
    pytest.param({"request_id": "r" * 129}, "request_id", id="request-id-too-long"),
    pytest.param({"high_value": 100, "low_value": 100}, "high_value", id="high-equal-low"),
    pytest.param({"high_value": 90, "low_value": 100}, "high_value", id="high-below-low"),
    pytest.param(
        {"high_value": 100, "clear_high_value": True}, "clear_high_value", id="clear-and-set-high"
    ),
    pytest.param(
        {"low_value": 100, "clear_low_value": True}, "clear_low_value", id="clear-and-set-low"
    ),
]


@pytest.mark.parametrize(("fields", "field"), SET_SUBSCRIPTION_ERRORS)
def test_rejects_set_subscription_with_invalid_field(
    bus: MessageBus, store: MemoryStore, fields: dict[str, Any], field: str
) -> None:
    """An invalid SetSubscription field is INVALID_ARGUMENT naming it; nothing is stored."""
    user_id = register(bus)
    before = store.snapshot(without=("requests",))
    command = {"request_id": "s1", "user_id": user_id, "ticker": "AAPL"} | fields

    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(SetSubscription(**command))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == field
    assert store.snapshot(without=("requests",)) == before
    assert store.subscriptions == {}


def test_accepts_the_boundary_values_of_every_option(bus: MessageBus) -> None:
    """rearm_percent 0 and 50, cooldown_s 0 and remind_every_s 1 are all within range."""
    user_id = register(bus)

    low_end = set_sub(bus, user_id, "s1", rearm_percent=0, cooldown_s=0, remind_every_s=1)
    high_end = set_sub(bus, user_id, "s2", rearm_percent=50)

    assert (low_end.rearm_percent, low_end.cooldown_s, low_end.remind_every_s) == (0, None, 1)
    assert high_end.rearm_percent == 50


def test_rejects_set_subscription_for_an_unknown_user(bus: MessageBus, store: MemoryStore) -> None:
    """SetSubscription by a user id that does not exist is NOT_FOUND on "user_id"."""
    with pytest.raises(NotFound) as excinfo:
        bus.handle(SetSubscription("s1", "nobody", "AAPL", high_value=100))

    assert excinfo.value.code is ErrorCode.NOT_FOUND
    assert excinfo.value.field == "user_id"
    assert store.subscriptions == {}


# ----- thresholds against the merged stored state ---------------------------------------------


@pytest.mark.parametrize(
    ("stored", "change", "field"),
    [
        pytest.param({"low_value": 150}, {"high_value": 140}, "high_value", id="new-high-below"),
        pytest.param({"low_value": 150}, {"high_value": 150}, "high_value", id="new-high-equal"),
        pytest.param({"high_value": 100}, {"low_value": 120}, "low_value", id="new-low-above"),
        pytest.param({"high_value": 100}, {"low_value": 100}, "low_value", id="new-low-equal"),
    ],
)
def test_rejects_threshold_not_ordered_against_the_stored_other_threshold(
    bus: MessageBus,
    store: MemoryStore,
    stored: dict[str, Any],
    change: dict[str, Any],
    field: str,
) -> None:
    """A new high (low) not above (below) the stored low (high) is INVALID_ARGUMENT on it."""
    user_id = register(bus)
    set_sub(bus, user_id, "s1", **stored)
    before = store.snapshot(without=("requests",))
    view_before = only_subscription(bus, user_id)

    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(SetSubscription("s2", user_id, "AAPL", **change))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == field
    assert store.snapshot(without=("requests",)) == before
    assert only_subscription(bus, user_id) == view_before


def test_accepts_clearing_the_low_and_setting_a_high_below_the_old_low_in_one_request(
    bus: MessageBus,
) -> None:
    """clear_low_value applies before the order check, so the new high may be under the old low."""
    user_id = register(bus)
    set_sub(bus, user_id, "s1", low_value=150)

    view = set_sub(bus, user_id, "s2", high_value=140, clear_low_value=True)

    assert (view.high_value, view.low_value) == (140, None)
    assert only_subscription(bus, user_id) == view


# ----- SetSubscription semantics --------------------------------------------------------------


def test_set_subscription_creates_the_subscription_when_missing(
    bus: MessageBus, store: MemoryStore
) -> None:
    """SetSubscription on an unwatched ticker creates it with defaults for unset options."""
    user_id = register(bus)

    view = set_sub(bus, user_id, "s1", ticker="aapl", high_value=200)

    assert view == only_subscription(bus, user_id)
    assert (view.ticker, view.high_value, view.low_value) == ("AAPL", 200, None)
    assert (view.rearm_percent, view.cooldown_s, view.remind_every_s) == (1.0, None, None)
    assert (view.high_status, view.low_status) == (SideStatus.ARMED, None)
    assert list(store.subscriptions) == [view.subscription_id]


def test_set_subscription_keeps_stored_values_of_fields_left_unset(bus: MessageBus) -> None:
    """Fields left None in SetSubscription keep their stored values (and the same id)."""
    user_id = register(bus)
    created = set_sub(
        bus,
        user_id,
        "s1",
        high_value=200,
        low_value=100,
        rearm_percent=2,
        cooldown_s=60,
        remind_every_s=3600,
    )

    changed = set_sub(bus, user_id, "s2", high_value=210)

    assert changed.subscription_id == created.subscription_id
    assert (changed.high_value, changed.low_value, changed.rearm_percent) == (210, 100, 2)
    assert (changed.cooldown_s, changed.remind_every_s) == (60, 3600)
    assert only_subscription(bus, user_id) == changed


@pytest.mark.parametrize(
    ("flag", "cleared", "kept"),
    [
        pytest.param("clear_high_value", "high", "low", id="high"),
        pytest.param("clear_low_value", "low", "high", id="low"),
    ],
)
def test_clear_flag_removes_that_threshold_only(
    bus: MessageBus, flag: str, cleared: str, kept: str
) -> None:
    """clear_high_value / clear_low_value remove one threshold and its status, not the other."""
    user_id = register(bus)
    set_sub(bus, user_id, "s1", high_value=200, low_value=100)

    view = set_sub(bus, user_id, "s2", **{flag: True})

    assert getattr(view, f"{cleared}_value") is None
    assert getattr(view, f"{cleared}_status") is None
    assert getattr(view, f"{kept}_value") == {"high": 200, "low": 100}[kept]
    assert getattr(view, f"{kept}_status") is SideStatus.ARMED
    assert only_subscription(bus, user_id) == view


@pytest.mark.parametrize("option", ["cooldown_s", "remind_every_s"])
def test_zero_switches_an_option_off(bus: MessageBus, option: str) -> None:
    """cooldown_s = 0 / remind_every_s = 0 switch the option off (None in the view)."""
    user_id = register(bus)
    set_sub(bus, user_id, "s1", high_value=200, cooldown_s=60, remind_every_s=3600)

    view = set_sub(bus, user_id, "s2", **{option: 0})

    assert getattr(view, option) is None
    assert getattr(only_subscription(bus, user_id), option) is None


@pytest.mark.parametrize(
    ("side", "threshold", "beyond", "new_threshold"),
    [
        pytest.param("high", 100, 101, 110, id="high"),
        pytest.param("low", 100, 99, 90, id="low"),
    ],
)
def test_changing_a_threshold_rearms_that_side(
    bus: MessageBus,
    clock: ManualClock,
    mailer: MemoryMailer,
    side: str,
    threshold: float,
    beyond: float,
    new_threshold: float,
) -> None:
    """A FIRED side whose threshold changes is ARMED again and can fire a new notification."""
    user_id = register(bus)
    set_sub(bus, user_id, "s1", **{f"{side}_value": threshold})
    record(bus, clock, 1, beyond)
    assert getattr(only_subscription(bus, user_id), f"{side}_status") is SideStatus.FIRED

    view = set_sub(bus, user_id, "s2", **{f"{side}_value": new_threshold})

    assert getattr(view, f"{side}_status") is SideStatus.ARMED
    assert getattr(only_subscription(bus, user_id), f"{side}_status") is SideStatus.ARMED
    record(bus, clock, 2, new_threshold + (1 if side == "high" else -1))
    assert len(mailer.sent) == 2
    assert len({n.notification_id for n in mailer.sent}) == 2


def test_changing_only_the_cooldown_keeps_a_fired_side_fired(
    bus: MessageBus, clock: ManualClock
) -> None:
    """Changing an option but not the threshold leaves a FIRED side FIRED."""
    user_id = register(bus)
    set_sub(bus, user_id, "s1", high_value=100)
    record(bus, clock, 1, 101)

    view = set_sub(bus, user_id, "s2", cooldown_s=300)

    assert view.high_status is SideStatus.FIRED
    assert only_subscription(bus, user_id).high_status is SideStatus.FIRED


# ----- DeleteUser -----------------------------------------------------------------------------


def test_delete_user_removes_everything_of_that_user_and_nothing_of_others(
    bus: MessageBus, store: MemoryStore, clock: ManualClock, mailer: MemoryMailer
) -> None:
    """DeleteUser removes the user's account, subscriptions, states, history and replies."""
    alice = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    set_sub(bus, alice, "a-msft", ticker="MSFT", low_value=300)
    bob = register(bus, "bob@example.com", SubscriptionSpec("AAPL", high_value=100))
    record(bus, clock, 1, 101)
    record(bus, clock, 2, 250, ticker="MSFT")
    assert {n.user_id for n in mailer.sent} == {alice, bob}
    assert {r.notification.user_id for r in store.notifications.values()} == {alice, bob}
    bob_subs = subscriptions(bus, bob)
    bob_notifications = bus.ask(ListNotifications(bob))
    bob_states = {
        k: v for k, v in store.alert_states.items() if store.subscriptions[k[0]].user_id == bob
    }
    bob_requests = {
        k: v for k, v in store.requests.items() if k.subject in {bob, "bob@example.com"}
    }

    assert bus.handle(DeleteUser("d1", alice, clock.now())) == Done()

    assert list(store.users) == [bob]
    assert list(store.user_by_email) == [Email("bob@example.com")]
    assert {s.user_id for s in store.subscriptions.values()} == {bob}
    assert store.alert_states == bob_states
    assert {r.notification.user_id for r in store.notifications.values()} == {bob}
    alice_requests = [k for k in store.requests if k.subject in {alice, "alice@example.com"}]
    assert [(k.method, k.request_id) for k in alice_requests] == [("DeleteUser", "d1")]
    assert {k: v for k, v in store.requests.items() if k not in alice_requests} == bob_requests
    assert subscriptions(bus, bob) == bob_subs
    assert bus.ask(ListNotifications(bob)) == bob_notifications


def test_a_deleted_users_queries_are_not_found(bus: MessageBus, clock: ManualClock) -> None:
    """Queries naming a deleted user id are NOT_FOUND on "user_id"."""
    alice = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    record(bus, clock, 1, 90)
    bus.handle(DeleteUser("d1", alice, clock.now()))

    for query in (ListSubscriptions(alice), ListNotifications(alice), GetLatestValue(alice)):
        with pytest.raises(NotFound) as excinfo:
            bus.ask(query)
        assert excinfo.value.code is ErrorCode.NOT_FOUND
        assert excinfo.value.field == "user_id"


def test_a_deleted_users_email_can_register_again(
    bus: MessageBus, store: MemoryStore, clock: ManualClock
) -> None:
    """After DeleteUser the e-mail is free, even with the old registration request id."""
    first = register(bus, "alice@example.com", SubscriptionSpec("AAPL"), request_id="r1")
    bus.handle(DeleteUser("d1", first, clock.now()))

    second = register(bus, "Alice@Example.com", request_id="r1")

    assert second != first
    assert list(store.users) == [second]
    assert subscriptions(bus, second) == []


def test_deleted_user_no_longer_receives_alerts(
    bus: MessageBus, store: MemoryStore, clock: ManualClock, mailer: MemoryMailer
) -> None:
    """Once deleted, a user's thresholds no longer raise notifications."""
    alice = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    bus.handle(DeleteUser("d1", alice, clock.now()))

    record(bus, clock, 1, 101)

    assert mailer.sent == []
    assert store.notifications == {}


def test_domain_errors_carry_their_own_code(bus: MessageBus, clock: ManualClock) -> None:
    """Every error raised through the bus is a DomainError whose code matches its type."""
    with pytest.raises(DomainError) as excinfo:
        bus.handle(DeleteUser("d1", "nobody", clock.now()))

    assert type(excinfo.value) is NotFound
    assert excinfo.value.code is ErrorCode.NOT_FOUND
    assert excinfo.value.field == "user_id"

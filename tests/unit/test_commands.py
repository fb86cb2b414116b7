"""Commands through the message bus, edge to edge over the in-memory adapters."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from stockalert.adapters.memory.fakes import ManualClock, MemoryMailer
from stockalert.adapters.memory.storage import MemoryStore
from stockalert.domain.commands import (
    DeleteUser,
    RecordQuotes,
    RegisterUser,
    RemoveSubscription,
    RetryPendingNotifications,
    SetSubscription,
    SubscriptionSpec,
)
from stockalert.domain.errors import (
    AlreadyExists,
    DomainError,
    ErrorCode,
    InvalidArgument,
    NotFound,
)
from stockalert.domain.events import AlertRaised
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import (
    DeliveryStatus,
    Email,
    Notification,
    NotificationKind,
    Quote,
    RetryPolicy,
    Side,
    SideStatus,
    Ticker,
)
from stockalert.domain.ports import MailNotAttempted, MailPermanentError, MailTemporaryError
from stockalert.domain.queries import (
    GetLatestValue,
    ListNotifications,
    ListSubscriptions,
)
from stockalert.domain.views import Done, SubscriptionView, UserRegistered

GOOD_SECRET = "correct horse"

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


# ----- helpers -----------------------------------------------------------------------------


def domain_state(store: MemoryStore) -> dict[str, object]:
    """Copy of every table that holds user data (the request ledger is checked separately)."""
    return {
        "users": dict(store.users),
        "user_by_email": dict(store.user_by_email),
        "subscriptions": dict(store.subscriptions),
        "sub_by_user_ticker": dict(store.sub_by_user_ticker),
        "alert_states": dict(store.alert_states),
        "quotes": {ticker: list(quotes) for ticker, quotes in store.quotes.items()},
        "notifications": dict(store.notifications),
    }


def register(
    bus: MessageBus,
    email: str = "alice@example.com",
    *specs: SubscriptionSpec,
    request_id: str | None = None,
) -> str:
    reply = bus.handle(RegisterUser(request_id or f"reg-{email}", email, GOOD_SECRET, specs))
    assert isinstance(reply, UserRegistered)
    return reply.user_id


def set_sub(bus: MessageBus, user_id: str, request_id: str, **fields: object) -> SubscriptionView:
    fields.setdefault("ticker", "AAPL")
    reply = bus.handle(SetSubscription(request_id=request_id, user_id=user_id, **fields))
    assert isinstance(reply, SubscriptionView)
    return reply


def quote_at(clock: ManualClock, seconds: float, price: float, ticker: str = "AAPL") -> Quote:
    return Quote(Ticker(ticker), price, clock.now() + timedelta(seconds=seconds))


def record(
    bus: MessageBus, clock: ManualClock, seconds: float, price: float, ticker: str = "AAPL"
) -> object:
    return bus.handle(RecordQuotes((quote_at(clock, seconds, price, ticker),)))


def subscriptions(bus: MessageBus, user_id: str) -> list[SubscriptionView]:
    views = bus.ask(ListSubscriptions(user_id))
    assert isinstance(views, list)
    return views


def only_subscription(bus: MessageBus, user_id: str) -> SubscriptionView:
    (view,) = subscriptions(bus, user_id)
    return view


# ----- registration ------------------------------------------------------------------------


def test_registration_returns_the_id_of_the_stored_user(bus: MessageBus, store: MemoryStore):
    """A successful RegisterUser replies UserRegistered carrying the new user's id."""
    reply = bus.handle(RegisterUser("r1", "alice@example.com", GOOD_SECRET))

    assert isinstance(reply, UserRegistered)
    assert reply.user_id
    assert list(store.users) == [reply.user_id]


def test_registration_normalises_the_email_to_lower_case(bus: MessageBus, store: MemoryStore):
    """The stored e-mail is the trimmed, lower-cased form of what the user typed."""
    user_id = register(bus, "  Alice.Smith@Example.COM ")

    assert store.users[user_id].email == Email("alice.smith@example.com")
    assert store.user_by_email == {Email("alice.smith@example.com"): user_id}


def test_registration_stores_initial_subscriptions_with_upper_cased_tickers(bus: MessageBus):
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
def test_rejects_registration_with_malformed_email(bus: MessageBus, store: MemoryStore, email):
    """A malformed e-mail (incl. header injection) is INVALID_ARGUMENT on "email"; no user."""
    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(RegisterUser("r1", email, GOOD_SECRET))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == "email"
    assert store.users == {}
    assert store.user_by_email == {}


@pytest.mark.parametrize("password", ["", "short", "1234567"])
def test_rejects_registration_with_password_shorter_than_eight(
    bus: MessageBus, store: MemoryStore, password
):
    """A password under 8 characters is INVALID_ARGUMENT on "password"; no user is stored."""
    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(RegisterUser("r1", "alice@example.com", password))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == "password"
    assert store.users == {}


@pytest.mark.parametrize("request_id", ["", "   "])
def test_rejects_registration_with_empty_request_id(
    bus: MessageBus, store: MemoryStore, request_id
):
    """An empty request id is INVALID_ARGUMENT on "request_id"; not even a reply is stored."""
    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(RegisterUser(request_id, "alice@example.com", GOOD_SECRET))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == "request_id"
    assert store.users == {}
    assert store.requests == {}


REGISTRATION_SPEC_ERRORS = [
    *[
        pytest.param((SubscriptionSpec(t),), "subscriptions[0].ticker", id=f"ticker-{p.id}")
        for p in BAD_TICKERS
        for t in p.values
    ],
    *[
        pytest.param(
            (SubscriptionSpec("AAPL"), SubscriptionSpec("MSFT", high_value=v)),
            "subscriptions[1].high_value",
            id=f"high-{p.id}",
        )
        for p in BAD_PRICES
        for v in p.values
    ],
    *[
        pytest.param(
            (SubscriptionSpec("AAPL", low_value=v),),
            "subscriptions[0].low_value",
            id=f"low-{p.id}",
        )
        for p in BAD_PRICES
        for v in p.values
    ],
    *[
        pytest.param(
            (SubscriptionSpec("AAPL", rearm_percent=v),),
            "subscriptions[0].rearm_percent",
            id=f"rearm-{p.id}",
        )
        for p in BAD_REARM_PERCENTS
        for v in p.values
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
    bus: MessageBus, store: MemoryStore, specs, field
):
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
):
    """A RegisterUser whose second spec is invalid leaves nothing half-written."""
    specs = (SubscriptionSpec("AAPL", high_value=200), SubscriptionSpec("MSFT", low_value=-1))

    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(RegisterUser("r1", "alice@example.com", GOOD_SECRET, specs))

    assert excinfo.value.field == "subscriptions[1].low_value"
    assert domain_state(store) == domain_state(MemoryStore())


@pytest.mark.parametrize(
    "second_email", ["alice@example.com", "ALICE@EXAMPLE.COM", " Alice@Example.com "]
)
def test_rejects_registration_of_an_already_registered_email_in_any_case(
    bus: MessageBus, store: MemoryStore, second_email
):
    """Registering an e-mail that exists (any case) is ALREADY_EXISTS; the first user stays."""
    first_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=200))
    before = domain_state(store)

    with pytest.raises(AlreadyExists) as excinfo:
        bus.handle(
            RegisterUser("r-second", second_email, "another password", (SubscriptionSpec("MSFT"),))
        )

    assert excinfo.value.code is ErrorCode.ALREADY_EXISTS
    assert excinfo.value.field == "email"
    assert domain_state(store) == before
    assert list(store.users) == [first_id]


# ----- SetSubscription validation ------------------------------------------------------------


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
    bus: MessageBus, store: MemoryStore, fields, field
):
    """An invalid SetSubscription field is INVALID_ARGUMENT naming it; nothing is stored."""
    user_id = register(bus)
    before = domain_state(store)
    command = {"request_id": "s1", "user_id": user_id, "ticker": "AAPL"} | fields

    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(SetSubscription(**command))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == field
    assert domain_state(store) == before
    assert store.subscriptions == {}


def test_accepts_the_boundary_values_of_every_option(bus: MessageBus):
    """rearm_percent 0 and 50, cooldown_s 0 and remind_every_s 1 are all within range."""
    user_id = register(bus)

    low_end = set_sub(bus, user_id, "s1", rearm_percent=0, cooldown_s=0, remind_every_s=1)
    high_end = set_sub(bus, user_id, "s2", rearm_percent=50)

    assert (low_end.rearm_percent, low_end.cooldown_s, low_end.remind_every_s) == (0, None, 1)
    assert high_end.rearm_percent == 50


def test_rejects_set_subscription_for_an_unknown_user(bus: MessageBus, store: MemoryStore):
    """SetSubscription by a user id that does not exist is NOT_FOUND on "user_id"."""
    with pytest.raises(NotFound) as excinfo:
        bus.handle(SetSubscription("s1", "nobody", "AAPL", high_value=100))

    assert excinfo.value.code is ErrorCode.NOT_FOUND
    assert excinfo.value.field == "user_id"
    assert store.subscriptions == {}


# ----- thresholds against the merged stored state --------------------------------------------


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
    bus: MessageBus, store: MemoryStore, stored, change, field
):
    """A new high (low) not above (below) the stored low (high) is INVALID_ARGUMENT on it."""
    user_id = register(bus)
    set_sub(bus, user_id, "s1", **stored)
    before = domain_state(store)
    view_before = only_subscription(bus, user_id)

    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(SetSubscription("s2", user_id, "AAPL", **change))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == field
    assert domain_state(store) == before
    assert only_subscription(bus, user_id) == view_before


def test_accepts_clearing_the_low_and_setting_a_high_below_the_old_low_in_one_request(
    bus: MessageBus,
):
    """clear_low_value applies before the order check, so the new high may be under the old low."""
    user_id = register(bus)
    set_sub(bus, user_id, "s1", low_value=150)

    view = set_sub(bus, user_id, "s2", high_value=140, clear_low_value=True)

    assert (view.high_value, view.low_value) == (140, None)
    assert only_subscription(bus, user_id) == view


# ----- SetSubscription semantics --------------------------------------------------------------


def test_set_subscription_creates_the_subscription_when_missing(
    bus: MessageBus, store: MemoryStore
):
    """SetSubscription on an unwatched ticker creates it with defaults for unset options."""
    user_id = register(bus)

    view = set_sub(bus, user_id, "s1", ticker="aapl", high_value=200)

    assert view == only_subscription(bus, user_id)
    assert (view.ticker, view.high_value, view.low_value) == ("AAPL", 200, None)
    assert (view.rearm_percent, view.cooldown_s, view.remind_every_s) == (1.0, None, None)
    assert (view.high_status, view.low_status) == (SideStatus.ARMED, None)
    assert list(store.subscriptions) == [view.subscription_id]


def test_set_subscription_keeps_stored_values_of_fields_left_unset(bus: MessageBus):
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
def test_clear_flag_removes_that_threshold_only(bus: MessageBus, flag, cleared, kept):
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
def test_zero_switches_an_option_off(bus: MessageBus, option):
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
    side,
    threshold,
    beyond,
    new_threshold,
):
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


def test_changing_only_the_cooldown_keeps_a_fired_side_fired(bus: MessageBus, clock: ManualClock):
    """Changing an option but not the threshold leaves a FIRED side FIRED."""
    user_id = register(bus)
    set_sub(bus, user_id, "s1", high_value=100)
    record(bus, clock, 1, 101)

    view = set_sub(bus, user_id, "s2", cooldown_s=300)

    assert view.high_status is SideStatus.FIRED
    assert only_subscription(bus, user_id).high_status is SideStatus.FIRED


# ----- at most once ---------------------------------------------------------------------------


def test_replayed_registration_returns_the_identical_reply_and_creates_one_user(
    bus: MessageBus, store: MemoryStore
):
    """The same RegisterUser request id replayed answers the first reply and adds no user."""
    command = RegisterUser("r1", "alice@example.com", GOOD_SECRET, (SubscriptionSpec("AAPL"),))

    first = bus.handle(command)
    second = bus.handle(command)

    assert second == first
    assert len(store.users) == 1
    assert len(store.subscriptions) == 1


def test_a_stored_failure_is_replayed_even_after_the_state_changed(
    bus: MessageBus, store: MemoryStore
):
    """A request id whose first run failed keeps failing the same way; a new id executes."""
    user_id = register(bus)
    remove = RemoveSubscription("rm1", user_id, "AAPL")
    with pytest.raises(NotFound) as first:
        bus.handle(remove)
    assert (first.value.code, first.value.field) == (ErrorCode.NOT_FOUND, "ticker")
    set_sub(bus, user_id, "s1", high_value=100)

    with pytest.raises(NotFound) as replayed:
        bus.handle(remove)

    assert replayed.value == first.value
    assert [v.ticker for v in subscriptions(bus, user_id)] == ["AAPL"]
    assert bus.handle(RemoveSubscription("rm2", user_id, "AAPL")) == Done()
    assert subscriptions(bus, user_id) == []
    assert store.alert_states == {}


def test_same_request_id_for_different_command_types_executes_both(bus: MessageBus):
    """The ledger key includes the method: SetSubscription r1 and RemoveSubscription r1 both run."""
    user_id = register(bus)

    set_sub(bus, user_id, "r1", high_value=100)
    removed = bus.handle(RemoveSubscription("r1", user_id, "AAPL"))

    assert removed == Done()
    assert subscriptions(bus, user_id) == []


def test_same_request_id_by_two_users_executes_for_each(bus: MessageBus, store: MemoryStore):
    """The ledger key includes the user: one request id used by two users runs twice."""
    alice = register(bus, "alice@example.com")
    bob = register(bus, "bob@example.com")

    alice_view = set_sub(bus, alice, "r1", high_value=100)
    bob_view = set_sub(bus, bob, "r1", high_value=100)

    assert alice_view.subscription_id != bob_view.subscription_id
    assert len(store.subscriptions) == 2
    assert only_subscription(bus, alice) == alice_view
    assert only_subscription(bus, bob) == bob_view


def test_rejects_a_reused_request_id_with_a_different_payload(bus: MessageBus, store: MemoryStore):
    """Same method, user and request id but other content is INVALID_ARGUMENT on "request_id"."""
    user_id = register(bus)
    set_sub(bus, user_id, "r1", high_value=100)
    before = domain_state(store)

    with pytest.raises(InvalidArgument) as excinfo:
        bus.handle(SetSubscription("r1", user_id, "AAPL", high_value=120))

    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.field == "request_id"
    assert domain_state(store) == before
    assert only_subscription(bus, user_id).high_value == 100


def test_concurrent_duplicates_execute_once_and_all_get_the_same_reply(
    bus: MessageBus, store: MemoryStore
):
    """20 threads sending the same SetSubscription at once create one subscription, 20 replies."""
    user_id = register(bus)
    command = SetSubscription("r1", user_id, "AAPL", high_value=200, low_value=100)
    start = threading.Barrier(20, timeout=10)

    def send() -> object:
        start.wait()
        return bus.handle(command)

    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = [f.result(timeout=10) for f in [pool.submit(send) for _ in range(20)]]

    assert len(replies) == 20
    assert all(reply == replies[0] for reply in replies)
    assert isinstance(replies[0], SubscriptionView)
    assert len(store.subscriptions) == 1
    assert subscriptions(bus, user_id) == [replies[0]]


# ----- DeleteUser -----------------------------------------------------------------------------


def test_delete_user_removes_everything_of_that_user_and_nothing_of_others(
    bus: MessageBus, store: MemoryStore, clock: ManualClock, mailer: MemoryMailer
):
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


def test_a_deleted_users_queries_are_not_found(bus: MessageBus, clock: ManualClock):
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
):
    """After DeleteUser the e-mail is free, even with the old registration request id."""
    first = register(bus, "alice@example.com", SubscriptionSpec("AAPL"), request_id="r1")
    bus.handle(DeleteUser("d1", first, clock.now()))

    second = register(bus, "Alice@Example.com", request_id="r1")

    assert second != first
    assert list(store.users) == [second]
    assert subscriptions(bus, second) == []


def test_deleted_user_no_longer_receives_alerts(
    bus: MessageBus, store: MemoryStore, clock: ManualClock, mailer: MemoryMailer
):
    """Once deleted, a user's thresholds no longer raise notifications."""
    alice = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    bus.handle(DeleteUser("d1", alice, clock.now()))

    record(bus, clock, 1, 101)

    assert mailer.sent == []
    assert store.notifications == {}


# ----- alert flow -----------------------------------------------------------------------------


def test_one_email_per_crossing_and_a_new_one_only_after_rearming(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
):
    """Above the high sends once; staying above sends nothing; back inside the band re-arms."""
    user_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))

    record(bus, clock, 1, 101)
    assert len(mailer.sent) == 1
    record(bus, clock, 2, 105)
    assert len(mailer.sent) == 1
    record(bus, clock, 3, 99.5)  # below the threshold but not inside the 1% band (99)
    record(bus, clock, 4, 101)
    assert len(mailer.sent) == 1
    record(bus, clock, 5, 98)
    assert only_subscription(bus, user_id).high_status is SideStatus.ARMED
    record(bus, clock, 6, 102)

    assert len(mailer.sent) == 2
    first, second = mailer.sent
    assert (first.user_id, first.ticker, first.price, first.threshold) == (
        user_id,
        Ticker("AAPL"),
        101,
        100,
    )
    assert second.price == 102
    assert first.notification_id != second.notification_id


def test_low_threshold_sends_an_email_when_the_price_falls_below(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
):
    """A quote strictly below low_value sends one e-mail; exactly at the threshold none."""
    register(bus, "alice@example.com", SubscriptionSpec("AAPL", low_value=100))

    record(bus, clock, 1, 100)
    assert mailer.sent == []
    record(bus, clock, 2, 99)

    assert [n.side.value for n in mailer.sent] == ["LOW"]


def test_a_cooldown_keeps_a_fired_side_fired_until_it_ends(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
):
    """Within cooldown_s of firing, a price back inside the band does not re-arm the side."""
    user_id = register(bus)
    set_sub(bus, user_id, "s1", high_value=100, cooldown_s=300)

    record(bus, clock, 0, 101)
    record(bus, clock, 10, 98)
    assert only_subscription(bus, user_id).high_status is SideStatus.FIRED
    record(bus, clock, 20, 101)
    assert len(mailer.sent) == 1
    record(bus, clock, 300, 98)
    assert only_subscription(bus, user_id).high_status is SideStatus.ARMED
    record(bus, clock, 301, 101)

    assert len(mailer.sent) == 2


@pytest.mark.parametrize("offset", [pytest.param(0, id="equal"), pytest.param(-1, id="older")])
def test_ignores_a_quote_not_newer_than_the_stored_one(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer, store: MemoryStore, offset
):
    """A quote with an older or equal quoted_at is not stored and triggers no alert."""
    user_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    assert record(bus, clock, 10, 90) == 1

    stored = record(bus, clock, 10 + offset, 150)

    assert stored == 0
    assert mailer.sent == []
    assert [q.price for q in store.quotes[Ticker("AAPL")]] == [90]
    latest = bus.ask(GetLatestValue(user_id))
    assert latest.value == 90


def test_skips_quotes_with_invalid_prices_and_counts_the_stored_ones(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer, store: MemoryStore
):
    """NaN, infinite, zero or negative prices are skipped without crashing; the rest count."""
    register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    quotes = (
        quote_at(clock, 1, math.nan),
        quote_at(clock, 2, -5),
        quote_at(clock, 3, 0),
        quote_at(clock, 4, math.inf),
        quote_at(clock, 5, 101),
        quote_at(clock, 6, math.nan),
    )

    stored = bus.handle(RecordQuotes(quotes))

    assert stored == 1
    assert [q.price for q in store.quotes[Ticker("AAPL")]] == [101]
    assert len(mailer.sent) == 1


# ----- mail failures --------------------------------------------------------------------------


def test_temporary_mail_failure_stays_pending_until_a_retry_sends_it(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
):
    """A MailTemporaryError leaves the notification PENDING; RetryPending sends it once."""
    user_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    mailer.fail_next(MailTemporaryError("421 try later"))

    record(bus, clock, 1, 101)

    (pending,) = bus.ask(ListNotifications(user_id))
    assert pending.status is DeliveryStatus.PENDING
    assert pending.attempts == 1
    assert pending.last_error == "421 try later"
    assert mailer.sent == []
    delay = RetryPolicy().delay_s(pending.notification.notification_id, 1)
    assert pending.next_attempt_at == clock.now() + timedelta(seconds=delay)

    assert bus.handle(RetryPendingNotifications()) == 0  # not due yet
    clock.advance(delay)
    assert bus.handle(RetryPendingNotifications()) == 1

    (sent,) = bus.ask(ListNotifications(user_id))
    assert sent.status is DeliveryStatus.SENT
    assert sent.attempts == 2
    assert sent.last_error is None
    assert sent.next_attempt_at is None
    assert mailer.sent == [pending.notification]
    assert bus.handle(RetryPendingNotifications()) == 0
    assert len(mailer.sent) == 1


def test_permanent_mail_failure_is_recorded_and_never_retried(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
):
    """A MailPermanentError marks the notification FAILED with the reason; retries skip it."""
    user_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    mailer.fail_next(MailPermanentError("550 no such mailbox"))

    record(bus, clock, 1, 101)

    (failed,) = bus.ask(ListNotifications(user_id))
    assert failed.status is DeliveryStatus.FAILED
    assert failed.attempts == 1
    assert failed.last_error == "550 no such mailbox"

    assert bus.handle(RetryPendingNotifications()) == 0

    assert mailer.sent == []
    assert bus.ask(ListNotifications(user_id)) == [failed]


def test_each_failed_attempt_doubles_the_wait_before_the_next(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
):
    """Backoff: 30 s, 60 s, 120 s ... (times a jitter in [0.5, 1.5)); retrying before the
    next attempt is due neither sends nor counts an attempt."""
    user_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    mailer.fail_next(*[MailTemporaryError("451 later")] * 4)
    record(bus, clock, 1, 101)

    waits = []
    for attempt in range(1, 5):
        (pending,) = bus.ask(ListNotifications(user_id))
        assert pending.attempts == attempt
        wait = (pending.next_attempt_at - clock.now()).total_seconds()
        assert 0.5 * 30 * 2 ** (attempt - 1) <= wait < 1.5 * 30 * 2 ** (attempt - 1)
        waits.append(wait)
        clock.advance(wait - 1)
        assert bus.handle(RetryPendingNotifications()) == 0
        assert bus.ask(ListNotifications(user_id))[0].attempts == attempt
        clock.advance(1)
        bus.handle(RetryPendingNotifications())
    (sent,) = bus.ask(ListNotifications(user_id))
    assert sent.status is DeliveryStatus.SENT
    assert sent.attempts == 5
    assert len(mailer.sent) == 1
    assert len(set(waits)) == 4


def test_an_e_mail_the_mailer_did_not_try_is_not_counted_as_an_attempt(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
):
    """MailNotAttempted (the mailer pauses after an outage): PENDING, attempts unchanged,
    tried again after the first backoff step, never a growing one."""
    user_id = register(bus, "alice@example.com", SubscriptionSpec("AAPL", high_value=100))
    mailer.fail_next(*[MailNotAttempted("not attempted, server unavailable")] * 3)
    record(bus, clock, 1, 101)

    for _ in range(2):
        (pending,) = bus.ask(ListNotifications(user_id))
        assert pending.status is DeliveryStatus.PENDING
        assert pending.attempts == 0
        assert pending.last_error == "not attempted, server unavailable"
        delay = RetryPolicy().delay_s(pending.notification.notification_id, 1)
        assert pending.next_attempt_at == clock.now() + timedelta(seconds=delay)
        clock.advance(delay)
        bus.handle(RetryPendingNotifications())
    clock.advance(60)
    assert bus.handle(RetryPendingNotifications()) == 1
    (sent,) = bus.ask(ListNotifications(user_id))
    assert sent.attempts == 1


def test_the_retry_policy_is_capped_deterministic_and_spread():
    """Same id and attempt, same delay; never above max_s; different ids do not retry in
    lock-step after an outage."""
    policy = RetryPolicy(base_s=10, max_s=300)
    assert policy.delay_s("a:HIGH:1", 3) == policy.delay_s("a:HIGH:1", 3)
    assert all(policy.delay_s("a:HIGH:1", n) <= 300 for n in range(1, 80))
    assert policy.delay_s("a:HIGH:1", 79) >= 150
    firsts = {round(policy.delay_s(f"s{n}:HIGH:1", 1), 3) for n in range(100)}
    assert len(firsts) > 90
    assert min(firsts) >= 5
    assert max(firsts) < 15
    with pytest.raises(ValueError, match="base_s"):
        RetryPolicy(base_s=10, max_s=5)


def test_retry_sends_every_due_notification_in_batches(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
):
    """45 pending notifications, batches of 20: one RetryPending sends all 45, once each."""
    mailer.fail_next(*[MailTemporaryError("421 down")] * 45)
    for n in range(45):
        register(bus, f"user{n}@example.com", SubscriptionSpec("AAPL", high_value=100))
    record(bus, clock, 1, 101)
    assert mailer.sent == []
    clock.advance(3600)

    assert bus.handle(RetryPendingNotifications(batch=20)) == 45

    assert len({n.notification_id for n in mailer.sent}) == 45
    assert len(mailer.sent) == 45
    assert bus.handle(RetryPendingNotifications(batch=20)) == 0


def test_retry_stops_at_a_batch_that_failed_entirely(
    bus: MessageBus, clock: ManualClock, mailer: MemoryMailer
):
    """The server is still down: after one batch of temporary failures the rest is left
    for later instead of failing one by one; nothing is lost."""
    users = [
        register(bus, f"user{n}@example.com", SubscriptionSpec("AAPL", high_value=100))
        for n in range(30)
    ]
    mailer.fail_next(*[MailTemporaryError("421 down")] * 40)
    record(bus, clock, 1, 101)
    clock.advance(3600)

    assert bus.handle(RetryPendingNotifications(batch=10)) == 0

    attempts = sorted(bus.ask(ListNotifications(u))[0].attempts for u in users)
    assert attempts == [1] * 20 + [2] * 10
    clock.advance(3600)
    assert bus.handle(RetryPendingNotifications(batch=10)) == 30
    assert len(mailer.sent) == 30


def test_domain_errors_carry_their_own_code(bus: MessageBus, clock: ManualClock):
    """Every error raised through the bus is a DomainError whose code matches its type."""
    with pytest.raises(DomainError) as excinfo:
        bus.handle(DeleteUser("d1", "nobody", clock.now()))

    assert type(excinfo.value) is NotFound
    assert excinfo.value.code is ErrorCode.NOT_FOUND
    assert excinfo.value.field == "user_id"


def test_an_alert_raised_for_a_since_deleted_user_is_not_sent(
    bus: MessageBus, mailer: MemoryMailer, store: MemoryStore, clock: ManualClock
) -> None:
    """An alert already in flight when its user is deleted is dropped, not e-mailed or stored."""
    user_id = register(bus, "gone@example.com")
    bus.handle(DeleteUser("del-gone", user_id, clock.now()))
    note = Notification(
        notification_id="s9:HIGH:1",
        subscription_id="s9",
        user_id=user_id,
        email=Email("gone@example.com"),
        ticker=Ticker("AAPL"),
        side=Side.HIGH,
        kind=NotificationKind.CROSSING,
        price=101.0,
        threshold=100.0,
        quoted_at=clock.now(),
        episode=1,
    )
    bus.publish(AlertRaised(note))
    assert mailer.sent == []
    assert store.notifications == {}

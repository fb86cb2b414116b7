"""One contract for every storage backend: memory, SQLite and a real MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest

from stockalert.domain.commands import RequestKey
from stockalert.domain.errors import AlreadyExists, ErrorCode
from stockalert.domain.events import UserDeleted
from stockalert.domain.model import (
    ARMED,
    DeliveryStatus,
    Email,
    Notification,
    NotificationKind,
    NotificationRecord,
    Quote,
    Side,
    SideState,
    SideStatus,
    Subscription,
    Ticker,
    TickerStatus,
    User,
)
from stockalert.domain.ports import StoredReply
from stockalert.domain.views import SubscriptionView, UserRegistered
from tests.integration.conftest import UowFactory

T0 = datetime(2026, 1, 5, 14, 30, 0, 123456, tzinfo=UTC)
AAPL, MSFT = Ticker("AAPL"), Ticker("MSFT")


def user(n: int = 1) -> User:
    return User(f"u{n}", Email(f"user{n}@example.com"), f"hash{n}", T0)


def sub(
    sid: str = "s1", user_id: str = "u1", ticker: Ticker = AAPL, **extra: float
) -> Subscription:
    n = int(user_id[1:])
    return Subscription(sid, user_id, Email(f"user{n}@example.com"), ticker, **extra)


def note(nid: str = "s1:HIGH:1", user_id: str = "u1", minute: int = 0) -> Notification:
    return Notification(
        notification_id=nid,
        subscription_id="s1",
        user_id=user_id,
        email=Email("user1@example.com"),
        ticker=AAPL,
        side=Side.HIGH,
        kind=NotificationKind.CROSSING,
        price=190.55,
        threshold=190.0,
        quoted_at=T0 + timedelta(minutes=minute),
        episode=1,
    )


def seed(uow_factory: UowFactory, *users: User, subs: tuple[Subscription, ...] = ()) -> None:
    uow = uow_factory()
    with uow:
        for u in users:
            uow.users.add(u)
        for s in subs:
            uow.subscriptions.save(s)
        uow.commit()


def test_users_are_found_by_id_and_by_email_and_deleted(uow_factory: UowFactory) -> None:
    """A stored user round-trips with an aware timestamp; deletion removes both lookups."""
    seed(uow_factory, user(1), user(2))
    uow = uow_factory()
    with uow:
        assert uow.users.get("u1") == user(1)
        assert uow.users.get_by_email(Email("user2@example.com")) == user(2)
        assert uow.users.get("nobody") is None
        uow.users.delete("u1")
        uow.commit()
    with uow:
        assert uow.users.get("u1") is None
        assert uow.users.get_by_email(Email("user1@example.com")) is None


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])  # memory serialises transactions
def test_second_user_with_the_same_email_is_rejected(uow_factory: UowFactory) -> None:
    """The e-mail is unique in the store itself, not only in the handler's check."""
    seed(uow_factory, user(1))
    uow = uow_factory()
    clash = User("u9", Email("user1@example.com"), "h", T0)
    with uow, pytest.raises(AlreadyExists):
        uow.users.add(clash)


def test_subscriptions_insert_update_and_list(uow_factory: UowFactory) -> None:
    """save() inserts or replaces by id; lookups by user and ticker see the latest values."""
    seed(uow_factory, user(1), user(2), subs=(sub("s1", high_value=190.0), sub("s2", ticker=MSFT)))
    uow = uow_factory()
    with uow:
        uow.subscriptions.save(sub("s1", high_value=195.5, low_value=180.25, cooldown_s=60.0))
        uow.subscriptions.save(sub("s3", user_id="u2"))
        uow.commit()
    with uow:
        assert uow.subscriptions.get("u1", AAPL) == sub(
            "s1", high_value=195.5, low_value=180.25, cooldown_s=60.0
        )
        assert sorted(s.subscription_id for s in uow.subscriptions.for_user("u1")) == ["s1", "s2"]
        assert uow.subscriptions.tickers_in_use() == {AAPL, MSFT}
        assert uow.subscriptions.watched([AAPL, Ticker("NOPE")]) == {AAPL}  # AAPL twice
        assert uow.subscriptions.watched([]) == set()
        assert uow.subscriptions.ticker_count() == 2
        assert len(uow.subscriptions.all()) == 3
        uow.subscriptions.delete("s2")
        uow.commit()
    with uow:
        assert uow.subscriptions.get("u1", MSFT) is None
        assert uow.subscriptions.tickers_in_use() == {AAPL}
        assert uow.subscriptions.ticker_count() == 1


def test_alert_states_default_to_armed_and_round_trip(uow_factory: UowFactory) -> None:
    """Unknown sides are ARMED; saved states come back exactly, floats included."""
    seed(uow_factory, user(1), subs=(sub("s1", high_value=190.0),))
    fired = SideState(SideStatus.FIRED, 3, 1767623400.25, 2, 1767627000.5)
    uow = uow_factory()
    with uow:
        assert uow.alert_states.get("s1", Side.HIGH) == ARMED
        uow.alert_states.save("s1", Side.HIGH, fired)
        uow.alert_states.save("s1", Side.LOW, SideState(episode=4))
        uow.commit()
    with uow:
        assert uow.alert_states.get("s1", Side.HIGH) == fired
        assert uow.alert_states.all() == {
            ("s1", Side.HIGH): fired,
            ("s1", Side.LOW): SideState(episode=4),
        }
        uow.alert_states.save("s1", Side.HIGH, ARMED)
        uow.alert_states.delete_for("s1")
        uow.commit()
    with uow:
        assert uow.alert_states.all() == {}


def test_quotes_keep_their_quote_time_and_latest_is_the_newest(uow_factory: UowFactory) -> None:
    """Quotes round-trip with microseconds in UTC; latest() and latest_quotes() pick the newest."""
    uow = uow_factory()
    with uow:
        for minute, price in ((2, 191.0), (0, 189.5), (1, 190.25)):
            uow.quotes.add(Quote(AAPL, price, T0 + timedelta(minutes=minute)), T0)
        uow.quotes.add(Quote(MSFT, 400.0, T0), T0)
        uow.commit()
    with uow:
        assert uow.quotes.latest(AAPL) == Quote(AAPL, 191.0, T0 + timedelta(minutes=2))
        assert uow.quotes.latest(Ticker("NOPE")) is None
        assert sorted(uow.quotes.latest_quotes(), key=lambda q: q.ticker.value) == [
            Quote(AAPL, 191.0, T0 + timedelta(minutes=2)),
            Quote(MSFT, 400.0, T0),
        ]
        assert uow.quotes.latest_many([AAPL, MSFT, Ticker("NOPE")]) == {
            AAPL: Quote(AAPL, 191.0, T0 + timedelta(minutes=2)),
            MSFT: Quote(MSFT, 400.0, T0),
        }
        assert uow.quotes.latest_collected_many([AAPL, Ticker("NOPE")]) == {AAPL: T0}
        uow.tickers.save(AAPL, TickerStatus.ACTIVE, None, T0)
        assert uow.tickers.get_many([AAPL, MSFT]) == {AAPL: TickerStatus.ACTIVE}


def test_correlation_ids_are_kept_with_quotes_and_notifications(uow_factory: UowFactory) -> None:
    """A quote's correlation id comes back with the quotes a reload re-applies (newer_than),
    and a notification's with its ledger record (the retries); none stays none."""
    uow = uow_factory()
    tagged = attrs.evolve(note("s1:HIGH:1"), correlation_id="c0ffee-1")
    with uow:
        uow.quotes.add(Quote(AAPL, 190.0, T0, correlation_id="c0ffee-1"), T0)
        uow.quotes.add(Quote(AAPL, 191.0, T0 + timedelta(minutes=1)), T0)
        uow.notifications.add(NotificationRecord(tagged, DeliveryStatus.PENDING, created_at=T0))
        uow.notifications.add_new([NotificationRecord(note("s1:HIGH:2"), DeliveryStatus.PENDING)])
        uow.commit()
    with uow:
        assert [q.correlation_id for q in uow.quotes.newer_than(AAPL, None)] == ["c0ffee-1", None]
        records = uow.notifications.get_many(["s1:HIGH:1", "s1:HIGH:2"])
        assert records["s1:HIGH:1"].notification.correlation_id == "c0ffee-1"
        assert records["s1:HIGH:2"].notification.correlation_id is None
        (pending,) = [r for r in uow.notifications.pending_of("u1", 10) if r.notification == tagged]
        assert pending.notification.correlation_id == "c0ffee-1"


def test_prune_keeps_recent_quotes_and_the_newest_n_of_followed_tickers(
    uow_factory: UowFactory,
) -> None:
    """Retention drops old quotes beyond the newest N, and every quote nobody follows."""
    seed(uow_factory, user(1), subs=(sub("s1"),))
    uow = uow_factory()
    with uow:
        for day in range(10):
            uow.quotes.add(Quote(AAPL, 100.0 + day, T0 + timedelta(days=day)), T0)
            uow.quotes.add(Quote(MSFT, 200.0 + day, T0 + timedelta(days=day)), T0)
        uow.commit()
    with uow:
        # Older than day 8 goes, except the newest 4 (days 6-9): days 6..9 stay.
        removed = uow.quotes.prune(T0 + timedelta(days=8), keep_newest=4)
        uow.commit()
    assert removed == 6 + 10
    with uow:
        assert uow.quotes.latest(MSFT) is None
        assert uow.quotes.latest(AAPL) == Quote(AAPL, 109.0, T0 + timedelta(days=9))
        assert uow.quotes.prune(T0 + timedelta(days=100), keep_newest=4) == 0  # newest 4 stay


def test_notification_ledger_tracks_delivery(uow_factory: UowFactory) -> None:
    """Records are unique by id; updates change status; pending_of() lists what is left."""
    uow = uow_factory()
    first = NotificationRecord(note("s1:HIGH:1"), DeliveryStatus.PENDING, created_at=T0)
    second = NotificationRecord(note("s1:HIGH:2", minute=5), DeliveryStatus.PENDING, created_at=T0)
    other = NotificationRecord(
        note("s9:LOW:1", user_id="u2"), DeliveryStatus.PENDING, created_at=T0
    )
    with uow:
        for record in (first, second, other):
            uow.notifications.add(record)
        uow.commit()
    sent = NotificationRecord(first.notification, DeliveryStatus.SENT, 1, None, T0, T0)
    with uow:
        uow.notifications.update(sent)
        uow.commit()
    with uow:
        assert uow.notifications.get("s1:HIGH:1") == sent
        assert [r.notification.notification_id for r in uow.notifications.pending_of("u1", 10)] == [
            "s1:HIGH:2"
        ]
        assert uow.notifications.due_users(T0 + timedelta(minutes=9), None, 10) == ["u1", "u2"]
        uow.notifications.delete_for_user("u1")
        uow.commit()
    with uow:
        assert uow.notifications.get("s1:HIGH:2") is None
        assert uow.notifications.get("s9:LOW:1") == other


def test_due_users_and_the_pending_of_a_user_in_sending_order(uow_factory: UowFactory) -> None:
    """due_users(due_at, after, limit): users with a PENDING record whose next attempt is due,
    in id order, paged by `after`; pending_of(user): that user's PENDING records by quote
    time then id, due or not (a later one waits behind an earlier one in backoff)."""
    uow = uow_factory()
    fresh = NotificationRecord(
        note("s1:HIGH:1", user_id="u3", minute=9), DeliveryStatus.PENDING, created_at=T0
    )
    retry_soon = NotificationRecord(
        note("s2:HIGH:1", user_id="u1", minute=1),
        DeliveryStatus.PENDING,
        attempts=1,
        last_error="421",
        created_at=T0,
        next_attempt_at=T0 + timedelta(seconds=30),
    )
    retry_later = attrs.evolve(
        retry_soon,
        notification=note("s3:HIGH:1", user_id="u2", minute=2),
        next_attempt_at=T0 + timedelta(seconds=90),
    )
    second_of_u1 = NotificationRecord(
        note("s0:LOW:1", user_id="u1", minute=1), DeliveryStatus.PENDING, created_at=T0
    )
    sent = NotificationRecord(
        note("s4:HIGH:1", user_id="u1", minute=0), DeliveryStatus.SENT, 1, None, T0, T0
    )
    with uow:
        for record in (retry_later, fresh, retry_soon, second_of_u1, sent):
            uow.notifications.add(record)
        uow.commit()

    def due(seconds: float, after: str | None = None, limit: int = 10) -> list[str]:
        with uow:
            return uow.notifications.due_users(T0 + timedelta(seconds=seconds), after, limit)

    assert due(0) == ["u1", "u3"]  # u1's second record was never tried: due now
    assert due(90) == ["u1", "u2", "u3"]
    assert due(90, limit=2) == ["u1", "u2"]
    assert due(90, after="u2") == ["u3"]
    with uow:
        in_order = [r.notification.notification_id for r in uow.notifications.pending_of("u1", 10)]
        assert in_order == ["s0:LOW:1", "s2:HIGH:1"]  # same quote time: by id; SENT left out
        assert uow.notifications.pending_of("u1", 1)[0] == second_of_u1
        assert uow.notifications.get("s3:HIGH:1") == retry_later  # the time round-trips
        by_user = uow.notifications.pending_of_users(["u1", "u2", "u9"], 1)
        assert by_user == {"u1": [second_of_u1], "u2": [retry_later]}  # first of each
        both = uow.notifications.get_many(["s0:LOW:1", "s4:HIGH:1", "nope"])
        assert both == {"s0:LOW:1": second_of_u1, "s4:HIGH:1": sent}


def test_batched_writes_of_the_alert_system(uow_factory: UowFactory) -> None:
    """save_many of side states (inserted or replaced; a removed subscription skipped) and of
    high-water marks; existing users among ids."""
    seed(uow_factory, user(1), user(2), subs=(sub("s1", high_value=190.0),))
    fired = SideState(SideStatus.FIRED, 3, 1767623400.25, 2, 1767627000.5)
    uow = uow_factory()
    with uow:
        uow.alert_states.save("s1", Side.HIGH, SideState(episode=1))
        uow.alert_progress.save(AAPL, T0)
        uow.commit()
    with uow:
        uow.alert_states.save_many(
            [
                ("s1", Side.HIGH, fired),
                ("s1", Side.LOW, SideState(episode=4)),
                ("gone", Side.LOW, fired),
            ]
        )
        uow.alert_progress.save_many({MSFT: T0, AAPL: T0 + timedelta(minutes=1)})
        uow.commit()
    with uow:
        assert uow.alert_states.all() == {
            ("s1", Side.HIGH): fired,
            ("s1", Side.LOW): SideState(episode=4),
        }
        assert uow.alert_progress.all() == {AAPL: T0 + timedelta(minutes=1), MSFT: T0}
        assert uow.users.existing(["u1", "u2", "u3"]) == {"u1", "u2"}
        assert uow.users.existing([]) == set()


def test_request_ledger_stores_replies_including_failures(uow_factory: UowFactory) -> None:
    """A claimed key is completed with its reply; later claims return it, typed."""
    ok_key = RequestKey("SetSubscription", "u1", "r1")
    failed_key = RequestKey("RemoveSubscription", "u1", "r1")
    view = SubscriptionView(
        "s1", "AAPL", 190.0, None, 1.0, None, 60.0, SideStatus.ARMED, None, TickerStatus.PENDING
    )
    ok = StoredReply("fp1", None, "", None, view, T0)
    failed = StoredReply(
        "fp2", ErrorCode.NOT_FOUND, "you are not watching AAPL", "ticker", None, T0
    )
    uow = uow_factory()
    with uow:
        assert uow.requests.claim(ok_key) is None
        uow.requests.complete(ok_key, ok)
        assert uow.requests.claim(failed_key) is None
        uow.requests.complete(failed_key, failed)
        uow.commit()
    with uow:
        assert uow.requests.claim(ok_key) == ok
        assert uow.requests.claim(failed_key) == failed
        assert uow.requests.expire_before(T0) == 0
        assert uow.requests.expire_before(T0 + timedelta(seconds=1)) == 2
        uow.commit()
    with uow:
        assert uow.requests.claim(ok_key) is None


def test_forgetting_a_subject_drops_only_its_replies(uow_factory: UowFactory) -> None:
    """DeleteUser's clean-up removes the user's replies and nobody else's."""
    mine, theirs = (
        RequestKey("RegisterUser", "a@x.io", "r"),
        RequestKey("RegisterUser", "b@x.io", "r"),
    )
    uow = uow_factory()
    with uow:
        for key in (mine, theirs):
            uow.requests.claim(key)
            uow.requests.complete(key, StoredReply("fp", None, "", None, UserRegistered("u"), T0))
        uow.commit()
    with uow:
        uow.requests.forget_subject("a@x.io")
        uow.commit()
    with uow:
        assert uow.requests.claim(mine) is None
        assert uow.requests.claim(theirs) is not None


def test_uncommitted_work_and_its_events_are_discarded(uow_factory: UowFactory) -> None:
    """Leaving the block without commit() writes nothing and releases no event."""
    uow = uow_factory()
    with uow:
        uow.users.add(user(1))
        uow.record(UserDeleted("u1"))
    with uow:
        assert uow.users.get("u1") is None
    assert list(uow.collect_events()) == []


def test_a_failed_savepoint_keeps_the_work_before_it(uow_factory: UowFactory) -> None:
    """Rolling back a savepoint undoes only what happened inside it."""
    uow = uow_factory()

    def inner() -> None:
        with uow.savepoint():
            uow.users.add(user(2))
            uow.record(UserDeleted("u2"))
            raise ValueError("inner")

    with uow:
        uow.users.add(user(1))
        uow.record(UserDeleted("u1"))
        with pytest.raises(ValueError, match="inner"):
            inner()
        uow.commit()
    with uow:
        assert uow.users.get("u1") == user(1)
        assert uow.users.get("u2") is None
    assert list(uow.collect_events()) == [UserDeleted("u1")]

"""The crossing state machine (ARCHITECTURE.md section 4), pinned on both engines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast

import pytest

from stockalert.domain.alerting import AlertEngine, ReferenceAlertEngine
from stockalert.domain.model import (
    Email,
    Notification,
    NotificationKind,
    Quote,
    Side,
    SideState,
    SideStatus,
    Subscription,
    Ticker,
)

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
AAPL = Ticker("AAPL")


class Engine(Protocol):
    def upsert(
        self, sub: Subscription, high: SideState | None = None, low: SideState | None = None
    ) -> None: ...
    def remove(self, subscription_id: str) -> None: ...
    def apply(self, quote: Quote) -> list[Notification]: ...
    def state_of(self, subscription_id: str, side: Side) -> SideState: ...


@pytest.fixture(params=[AlertEngine, ReferenceAlertEngine], ids=["incremental", "reference"])
def engine(request: pytest.FixtureRequest) -> Engine:
    return cast("Engine", request.param())


def sub(sid: str = "s1", ticker: Ticker = AAPL, **options: float) -> Subscription:
    return Subscription(sid, "u1", Email("ann@example.com"), ticker, **options)


class Feed:
    """Quotes one minute apart (by default) for one ticker."""

    def __init__(self, engine: Engine, ticker: Ticker = AAPL) -> None:
        self.engine = engine
        self.ticker = ticker
        self.at = T0

    def prices(self, *prices: float, every_s: float = 60) -> list[str]:
        """Apply the prices in order; the ids of all notifications they caused."""
        ids: list[str] = []
        for price in prices:
            self.at += timedelta(seconds=every_s)
            ids.extend(
                n.notification_id for n in self.engine.apply(Quote(self.ticker, price, self.at))
            )
        return ids

    def quote_at(self, price: float, at: datetime) -> list[Notification]:
        return self.engine.apply(Quote(self.ticker, price, at))


def each(feed: Feed, prices: Sequence[float]) -> list[list[str]]:
    """Notification ids caused by each price, one list per price."""
    return [feed.prices(p) for p in prices]


def test_high_side_fires_once_when_price_goes_strictly_above(engine: Engine) -> None:
    """HIGH fires on price > high_value, not on equality, and only once while above."""
    engine.upsert(sub(high_value=100.0))
    assert each(Feed(engine), [99, 100, 100.01, 105, 120]) == [[], [], ["s1:HIGH:1"], [], []]


def test_low_side_fires_once_when_price_goes_strictly_below(engine: Engine) -> None:
    """LOW fires on price < low_value, not on equality, and only once while below."""
    engine.upsert(sub(low_value=50.0))
    assert each(Feed(engine), [60, 50, 49.99, 45, 30]) == [[], [], ["s1:LOW:1"], [], []]


def test_notification_carries_price_threshold_side_and_quote_time(engine: Engine) -> None:
    """The notification states what crossed, at which price and quote time."""
    engine.upsert(sub(high_value=100.0))
    at = T0 + timedelta(minutes=5)
    (note,) = Feed(engine).quote_at(101.5, at)
    assert (note.side, note.kind, note.price, note.threshold, note.quoted_at, note.episode) == (
        Side.HIGH,
        NotificationKind.CROSSING,
        101.5,
        100.0,
        at,
        1,
    )
    assert (note.email, note.ticker, note.user_id) == (Email("ann@example.com"), AAPL, "u1")


def test_oscillation_inside_the_rearm_band_sends_one_notification(engine: Engine) -> None:
    """Around high=100 with the default 1% band, dipping to 99.5 does not re-arm."""
    engine.upsert(sub(high_value=100.0))
    ids = Feed(engine).prices(101, 99.5, 100.5, 99.2, 101, 99.01, 100.2)
    assert ids == ["s1:HIGH:1"]


def test_high_side_rearms_at_the_band_and_fires_again(engine: Engine) -> None:
    """Back to <= 99 (1% under 100) re-arms; the next crossing is a new episode."""
    engine.upsert(sub(high_value=100.0))
    feed = Feed(engine)
    assert each(feed, [101, 99.0, 100.5]) == [["s1:HIGH:1"], [], ["s1:HIGH:2"]]


def test_low_side_rearms_at_the_band_and_fires_again(engine: Engine) -> None:
    """Back to >= 50.5 (1% over 50) re-arms LOW."""
    engine.upsert(sub(low_value=50.0))
    feed = Feed(engine)
    assert each(feed, [49, 50.4, 49, 50.5, 49.9]) == [["s1:LOW:1"], [], [], [], ["s1:LOW:2"]]


def test_custom_rearm_band_is_respected(engine: Engine) -> None:
    """With rearm_percent=5, HIGH at 100 re-arms only at <= 95."""
    engine.upsert(sub(high_value=100.0, rearm_percent=5.0))
    assert Feed(engine).prices(101, 96, 101, 95, 101) == ["s1:HIGH:1", "s1:HIGH:2"]


def test_zero_rearm_band_rearms_as_soon_as_price_is_not_beyond(engine: Engine) -> None:
    """rearm_percent=0: HIGH at 100 re-arms at exactly 100."""
    engine.upsert(sub(high_value=100.0, rearm_percent=0.0))
    assert Feed(engine).prices(101, 100, 100.5) == ["s1:HIGH:1", "s1:HIGH:2"]


def test_both_sides_fire_independently_on_a_jump_across(engine: Engine) -> None:
    """A jump from above high to below low re-arms HIGH and fires LOW in one quote."""
    engine.upsert(sub(high_value=100.0, low_value=50.0))
    feed = Feed(engine)
    assert each(feed, [101, 40, 101]) == [["s1:HIGH:1"], ["s1:LOW:1"], ["s1:HIGH:2"]]


def test_cooldown_keeps_a_side_fired_until_it_has_elapsed(engine: Engine) -> None:
    """Within cooldown_s of firing, a dip into the band does not re-arm."""
    engine.upsert(sub(high_value=100.0, cooldown_s=600.0))
    feed = Feed(engine)
    # fired at t+1min; dips at +2, +3 min are inside the cooldown: no re-arm, no re-fire.
    assert feed.prices(101, 98, 101) == ["s1:HIGH:1"]
    # at +13 min the cooldown is over: the dip re-arms and the next rise fires again.
    assert feed.prices(98, every_s=600) == []
    assert feed.prices(101) == ["s1:HIGH:2"]


def test_cooldown_end_is_inclusive(engine: Engine) -> None:
    """A quote exactly cooldown_s after the firing may re-arm the side."""
    engine.upsert(sub(high_value=100.0, cooldown_s=120.0))
    feed = Feed(engine)
    fired = feed.prices(101)  # t = T0 + 60
    assert feed.quote_at(98, T0 + timedelta(seconds=179)) == []
    assert engine.state_of("s1", Side.HIGH).status is SideStatus.FIRED
    feed.quote_at(98, T0 + timedelta(seconds=180))
    assert (fired, engine.state_of("s1", Side.HIGH).status) == (["s1:HIGH:1"], SideStatus.ARMED)


def test_reminder_is_sent_while_the_price_stays_beyond(engine: Engine) -> None:
    """remind_every_s: one reminder per period while still above the threshold."""
    engine.upsert(sub(high_value=100.0, remind_every_s=300.0))
    feed = Feed(engine)
    ids = feed.prices(101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111)  # 11 minutes
    assert ids == ["s1:HIGH:1", "s1:HIGH:1:r1", "s1:HIGH:1:r2"]


def test_reminder_is_skipped_when_price_is_back_inside_but_not_rearmed(engine: Engine) -> None:
    """At the reminder time, a price at 99.5 (inside, but not by the band) sends nothing."""
    engine.upsert(sub(high_value=100.0, remind_every_s=120.0))
    feed = Feed(engine)
    assert each(feed, [101, 99.5, 99.5, 101, 101]) == [["s1:HIGH:1"], [], [], [], ["s1:HIGH:1:r1"]]


def test_rearm_cancels_pending_reminders(engine: Engine) -> None:
    """A re-armed side sends no reminder of its old episode."""
    engine.upsert(sub(high_value=100.0, remind_every_s=120.0))
    feed = Feed(engine)
    assert feed.prices(101, 90, 90, 90, 90) == ["s1:HIGH:1"]


def test_changed_threshold_rearms_and_is_evaluated_on_the_next_price(engine: Engine) -> None:
    """Changing high_value of a FIRED side re-arms it; the next quote may fire a new episode."""
    engine.upsert(sub(high_value=100.0))
    feed = Feed(engine)
    assert feed.prices(101) == ["s1:HIGH:1"]
    engine.upsert(sub(high_value=100.5))
    assert engine.state_of("s1", Side.HIGH) == SideState(episode=1)
    assert feed.prices(101) == ["s1:HIGH:2"]


def test_unchanged_threshold_keeps_a_fired_side_fired(engine: Engine) -> None:
    """Changing only the cooldown leaves the HIGH side FIRED: no duplicate notification."""
    engine.upsert(sub(high_value=100.0))
    feed = Feed(engine)
    feed.prices(101)
    engine.upsert(sub(high_value=100.0, cooldown_s=60.0))
    assert feed.prices(102, 103) == []
    assert engine.state_of("s1", Side.HIGH).status is SideStatus.FIRED


def test_new_threshold_is_not_evaluated_against_past_prices(engine: Engine) -> None:
    """A threshold set while the price is already beyond fires on the next quote, not before."""
    feed = Feed(engine)
    feed.prices(150)
    engine.upsert(sub(high_value=100.0))
    assert engine.state_of("s1", Side.HIGH).status is SideStatus.ARMED
    assert feed.prices(151) == ["s1:HIGH:1"]


def test_cleared_and_reset_side_continues_episode_numbering(engine: Engine) -> None:
    """Clearing a side and setting it again never reuses a notification id."""
    engine.upsert(sub(high_value=100.0))
    feed = Feed(engine)
    assert feed.prices(101) == ["s1:HIGH:1"]
    engine.upsert(sub(low_value=50.0))
    engine.upsert(sub(low_value=50.0, high_value=100.0))
    assert feed.prices(102) == ["s1:HIGH:2"]


def test_out_of_order_and_duplicate_quotes_are_ignored(engine: Engine) -> None:
    """A quote not newer than the last applied one for its ticker changes nothing."""
    engine.upsert(sub(high_value=100.0))
    feed = Feed(engine)
    at = T0 + timedelta(minutes=10)
    assert feed.quote_at(90, at) == []
    assert feed.quote_at(150, at) == []  # same time: duplicate
    assert feed.quote_at(150, at - timedelta(seconds=1)) == []  # older
    assert [n.notification_id for n in feed.quote_at(150, at + timedelta(seconds=1))] == [
        "s1:HIGH:1"
    ]


def test_quotes_only_reach_subscriptions_of_their_ticker(engine: Engine) -> None:
    """A quote for MSFT never fires an AAPL subscription."""
    engine.upsert(sub(high_value=100.0))
    assert Feed(engine, Ticker("MSFT")).prices(500) == []


def test_removed_subscription_never_fires(engine: Engine) -> None:
    """After remove(), quotes beyond the old threshold send nothing."""
    engine.upsert(sub(high_value=100.0))
    engine.upsert(sub("s2", high_value=100.0))
    engine.remove("s1")
    engine.remove("unknown")
    assert Feed(engine).prices(101) == ["s2:HIGH:1"]


def test_many_subscriptions_fire_together_once_each(engine: Engine) -> None:
    """One quote fires every armed side it passes, and only those."""
    for i in range(10):
        engine.upsert(sub(f"s{i}", high_value=100.0 + i))
    assert sorted(Feed(engine).prices(104.5)) == [f"s{i}:HIGH:1" for i in range(5)]


def test_stored_state_is_restored_on_upsert(engine: Engine) -> None:
    """A side loaded as FIRED (after a restart) does not fire again."""
    fired = SideState(SideStatus.FIRED, episode=3, fired_at=T0.timestamp())
    engine.upsert(sub(high_value=100.0), high=fired)
    feed = Feed(engine)
    assert feed.prices(105, 98, 101) == ["s1:HIGH:4"]


def test_incremental_engine_bulk_load_matches_upserts() -> None:
    """load() of many subscriptions (with stored states) behaves like one upsert each."""
    subs = [sub(f"s{i}", high_value=100.0 + i, low_value=50.0 - i) for i in range(20)]
    fired = {("s3", Side.HIGH): SideState(SideStatus.FIRED, 1, T0.timestamp())}
    loaded, upserted = AlertEngine(), AlertEngine()
    loaded.load(subs, fired)
    for s in subs:
        upserted.upsert(s, high=fired.get((s.subscription_id, Side.HIGH)))
    prices = [110, 40, 104, 60, 125]
    assert Feed(loaded).prices(*prices) == Feed(upserted).prices(*prices)
    with pytest.raises(ValueError, match="loaded already"):
        loaded.load(subs[:1])


def test_drain_changes_reports_each_changed_side_once() -> None:
    """The engine reports the sides it changed, for persisting, then forgets them."""
    engine = AlertEngine()
    engine.upsert(sub(high_value=100.0))
    engine.upsert(sub("s2", low_value=10.0))
    Feed(engine).prices(101, 102)
    changes = engine.drain_changes()
    assert [(c.subscription_id, c.side, c.state.status, c.state.episode) for c in changes] == [
        ("s1", Side.HIGH, SideStatus.FIRED, 1)
    ]
    assert engine.drain_changes() == []

"""Property tests: the incremental engine is the naive reference, only faster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from stockalert.domain.alerting import AlertEngine, ReferenceAlertEngine
from stockalert.domain.alerting.rules import rearm_level
from stockalert.domain.model import (
    Email,
    NotificationKind,
    Quote,
    Side,
    SideStatus,
    Subscription,
    Ticker,
)

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TICKERS = [Ticker("AAA"), Ticker("BBB")]
SUB_IDS = [f"s{i}" for i in range(8)]

prices = st.floats(min_value=50.0, max_value=150.0, allow_nan=False).map(lambda p: round(p, 2))

# The strategies a subscription is drawn from, built once (not on every draw: hypothesis
# validates and labels each new strategy, which made up most of these tests' time).
thresholds = st.none() | prices
sub_ids = st.sampled_from(SUB_IDS)
tickers = st.sampled_from(TICKERS)
rearm_percents = st.sampled_from([0.0, 1.0, 5.0])
cooldowns = st.sampled_from([None, 60.0, 300.0])
reminders = st.sampled_from([None, 120.0, 600.0])


@st.composite
def subscriptions(draw: st.DrawFn, sid: str | None = None) -> Subscription:
    high = draw(thresholds)
    low = draw(thresholds)
    if high is not None and low is not None and high <= low:
        high, low = (low + 1.0, high) if high < low else (high + 1.0, low)
    return Subscription(
        subscription_id=sid or draw(sub_ids),
        user_id="u1",
        email=Email("ann@example.com"),
        ticker=draw(tickers),
        high_value=high,
        low_value=low,
        rearm_percent=draw(rearm_percents),
        cooldown_s=draw(cooldowns),
        remind_every_s=draw(reminders),
    )


# A subscription with the id s0 ... s7, each strategy built once.
SUBSCRIPTION_WITH_ID = [subscriptions(sid=sid) for sid in SUB_IDS]

# An operation: ("quote", ticker index, price, seconds after the previous quote of any ticker
# - 0 and negative ones produce duplicates and out-of-order quotes), ("upsert", sub),
# or ("remove", subscription id).
Operation = (
    tuple[Literal["quote"], int, float, int]
    | tuple[Literal["upsert"], Subscription]
    | tuple[Literal["remove"], str]
)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("quote"),
            st.integers(0, len(TICKERS) - 1),
            prices,
            st.sampled_from([-60, 0, 30, 60, 60, 120, 600]),
        ),
        st.tuples(st.just("quote"), st.just(0), prices, st.just(60)),
        st.tuples(st.just("upsert"), subscriptions()),
        st.tuples(st.just("remove"), st.sampled_from(SUB_IDS)),
    ),
    max_size=60,
)


@settings(max_examples=500, deadline=None)
@given(initial=st.lists(subscriptions(), max_size=8), ops=operations)
def test_incremental_engine_emits_exactly_what_the_reference_emits(
    initial: list[Subscription], ops: list[Operation]
) -> None:
    """Random subscriptions, changes and price walks: same notifications, same states."""
    fast, slow = AlertEngine(), ReferenceAlertEngine()
    for sub in initial:
        fast.upsert(sub)
        slow.upsert(sub)
    at = T0
    for op in ops:
        match op:
            case ("quote", index, price, step):
                at += timedelta(seconds=step)
                quote = Quote(TICKERS[index], price, at)
                got = sorted((n.notification_id, n.kind, n.price) for n in fast.apply(quote))
                want = sorted((n.notification_id, n.kind, n.price) for n in slow.apply(quote))
                assert got == want
            case ("upsert", sub):
                fast.upsert(sub)
                slow.upsert(sub)
            case ("remove", sid):
                fast.remove(sid)
                slow.remove(sid)
    for sid in SUB_IDS:
        for side in Side:
            assert fast.state_of(sid, side) == slow.state_of(sid, side)
    assert len(fast) == len(slow)


@settings(max_examples=200, deadline=None)
@given(
    subs=st.lists(st.integers(0, 7), min_size=1, max_size=8, unique=True).flatmap(
        lambda ids: st.tuples(*(SUBSCRIPTION_WITH_ID[i] for i in ids))
    ),
    walk=st.lists(
        st.tuples(st.integers(0, 1), prices, st.sampled_from([30, 60, 300])), max_size=80
    ),
)
def test_a_side_never_fires_twice_without_rearming_in_between(
    subs: tuple[Subscription, ...], walk: list[tuple[int, float, int]]
) -> None:
    """Every CROSSING comes from an ARMED side and starts the next episode."""
    engine = AlertEngine()
    for sub in subs:
        engine.upsert(sub)
    at = T0
    for index, price, step in walk:
        at += timedelta(seconds=step)
        before = {
            (s.subscription_id, side): engine.state_of(s.subscription_id, side)
            for s in subs
            for side in Side
        }
        for note in engine.apply(Quote(TICKERS[index], price, at)):
            previous = before[(note.subscription_id, note.side)]
            if note.kind is NotificationKind.CROSSING:
                assert previous.status is SideStatus.ARMED
                assert note.episode == previous.episode + 1
            else:
                assert previous.status is SideStatus.FIRED
                assert note.episode == previous.episode


@settings(max_examples=200, deadline=None)
@given(
    threshold=prices,
    rearm=st.sampled_from([0.5, 1.0, 5.0]),
    side=st.sampled_from(Side),
    # Fractions of the way from the re-arm level towards (and beyond) the threshold: never
    # back inside the band.
    moves=st.lists(st.floats(min_value=0.001, max_value=3.0), min_size=1, max_size=100),
)
def test_price_oscillating_inside_the_band_yields_at_most_one_notification(
    threshold: float, rearm: float, side: Side, moves: list[float]
) -> None:
    """However the price moves without leaving the band, one crossing is one e-mail."""
    high, low = (threshold, None) if side is Side.HIGH else (None, threshold)
    sub = Subscription("s1", "u1", Email("ann@example.com"), TICKERS[0], high, low, rearm)
    engine = AlertEngine()
    engine.upsert(sub)
    level = rearm_level(side, threshold, rearm)
    at, sent = T0, []
    for fraction in moves:
        price = level + fraction * (threshold - level)
        if price == level:
            continue
        at += timedelta(seconds=60)
        sent += engine.apply(Quote(TICKERS[0], price, at))
    assert len(sent) <= 1

"""Accounts and their subscriptions: register, set or remove a subscription, delete a user.

All of these are idempotent commands: they run inside `request_ledger.run_once`'s
transaction and must not commit.
"""

from __future__ import annotations

from stockalert.domain.alerting.rules import adopt_change
from stockalert.domain.commands import (
    DeleteUser,
    RegisterUser,
    RemoveSubscription,
    SetSubscription,
    SubscriptionSpec,
)
from stockalert.domain.errors import AlreadyExists, InvalidArgument, NotFound, QuotaExceeded
from stockalert.domain.events import SubscriptionRemoved, SubscriptionSet, UserDeleted
from stockalert.domain.model import (
    ARMED,
    DEFAULT_REARM_PERCENT,
    MAX_PERIOD_S,
    MAX_REARM_PERCENT,
    MIN_REMIND_EVERY_S,
    Email,
    Quotas,
    Side,
    SideState,
    Subscription,
    Ticker,
    TickerStatus,
    User,
    check_password,
    parse_bounded,
    parse_price,
)
from stockalert.domain.ports import Clock, IdGenerator, PasswordHasher, UnitOfWork
from stockalert.domain.views import Done, SubscriptionView, UserRegistered

DEFAULT_QUOTAS = Quotas()

# ----- validation shared by registration and SetSubscription -------------------------------


def _optional_price(value: float | None, field: str) -> float | None:
    return None if value is None else parse_price(value, field)


def _optional_period(value: float | None, field: str, minimum: float) -> float | None:
    """None = leave as stored; 0 = switch off (returned as 0.0); else a period in seconds."""
    if value is None:
        return None
    seconds = parse_bounded(value, field, low=0.0, high=MAX_PERIOD_S)
    if 0.0 < seconds < minimum:
        raise InvalidArgument(field, f"must be 0 (off) or at least {minimum:g} seconds")
    return seconds


def _check_order(high: float | None, low: float | None, field: str, stored: bool) -> None:
    if high is not None and low is not None and high <= low:
        where = " (merged with the stored thresholds)" if stored else ""
        raise InvalidArgument(
            field, f"high_value {high:g} must be greater than low_value {low:g}{where}"
        )


def _spec_fields(
    spec: SubscriptionSpec, prefix: str
) -> tuple[Ticker, float | None, float | None, float]:
    ticker = Ticker.parse(spec.ticker, f"{prefix}ticker")
    high = _optional_price(spec.high_value, f"{prefix}high_value")
    low = _optional_price(spec.low_value, f"{prefix}low_value")
    rearm = DEFAULT_REARM_PERCENT
    if spec.rearm_percent is not None:
        rearm = parse_bounded(
            spec.rearm_percent, f"{prefix}rearm_percent", low=0.0, high=MAX_REARM_PERCENT
        )
    _check_order(high, low, f"{prefix}high_value", stored=False)
    return ticker, high, low, rearm


def _require_user(uow: UnitOfWork, user_id: str) -> User:
    user = uow.users.get(user_id)
    if user is None:
        # The caller's identity no longer exists (deleted account): same as a bad token.
        raise NotFound("user not found", field="user_id")
    return user


def _ticker_status(uow: UnitOfWork, ticker: Ticker) -> TickerStatus:
    return TickerStatus.PENDING if uow.quotes.latest(ticker) is None else TickerStatus.ACTIVE


def _store_subscription(
    uow: UnitOfWork, sub: Subscription, old: Subscription | None
) -> tuple[SideState, SideState]:
    current = (ARMED, ARMED) if old is None else uow.alert_states.sides(sub.subscription_id)
    high = adopt_change(Side.HIGH, old, current[0], sub)
    low = adopt_change(Side.LOW, old, current[1], sub)
    uow.subscriptions.save(sub)  # first: a state row belongs to an existing subscription
    uow.alert_states.save_sides(sub.subscription_id, high, low)
    uow.record(SubscriptionSet(sub, high, low))
    return high, low


# ----- commands ----------------------------------------------------------------------------


def _check_new_tickers(uow: UnitOfWork, tickers: set[Ticker], quotas: Quotas, field: str) -> None:
    """Refuse subscriptions that would take the system past its distinct tickers (each one
    costs every collection cycle a fetch)."""
    new = tickers - uow.subscriptions.watched(tickers) if tickers else set()
    if not new:  # the usual case: watched already, nothing more to fetch
        return
    count = uow.subscriptions.ticker_count()
    if count + len(new) > quotas.tickers:
        raise QuotaExceeded(
            field,
            f"the system watches at most {quotas.tickers} distinct tickers and has "
            f"{count}; {len(new)} new requested",
        )


def register_user(
    cmd: RegisterUser,
    uow: UnitOfWork,
    *,
    ids: IdGenerator,
    hasher: PasswordHasher,
    clock: Clock,
    quotas: Quotas = DEFAULT_QUOTAS,
) -> UserRegistered:
    """Create a user and their initial subscriptions; all of it or nothing."""
    if len(cmd.subscriptions) > quotas.subscriptions_per_user:  # before any work on them
        raise InvalidArgument(
            "subscriptions",
            f"at most {quotas.subscriptions_per_user} per user, got {len(cmd.subscriptions)}",
        )
    email = Email.parse(cmd.email)
    password = check_password(cmd.password)
    specs = []
    seen: dict[Ticker, int] = {}
    for index, spec in enumerate(cmd.subscriptions):
        fields = _spec_fields(spec, f"subscriptions[{index}].")
        if fields[0] in seen:
            raise InvalidArgument(
                f"subscriptions[{index}].ticker",
                f"{fields[0]} is listed twice (also at subscriptions[{seen[fields[0]]}])",
            )
        seen[fields[0]] = index
        specs.append(fields)
    if uow.users.get_by_email(email) is not None:
        raise AlreadyExists(f"a user with e-mail {email} already exists", field="email")
    _check_new_tickers(uow, set(seen), quotas, "subscriptions")
    user = User(ids.new_id(), email, hasher.hash(password), clock.now())
    uow.users.add(user)
    for ticker, high, low, rearm in specs:
        sub = Subscription(ids.new_id(), user.user_id, email, ticker, high, low, rearm)
        _store_subscription(uow, sub, None)
    return UserRegistered(user.user_id)


def set_subscription(
    cmd: SetSubscription, uow: UnitOfWork, *, ids: IdGenerator, quotas: Quotas = DEFAULT_QUOTAS
) -> SubscriptionView:
    """Create or change one subscription; thresholds are validated against the merged state."""
    ticker = Ticker.parse(cmd.ticker)
    if cmd.clear_high_value and cmd.high_value is not None:
        raise InvalidArgument("clear_high_value", "cannot be combined with high_value")
    if cmd.clear_low_value and cmd.low_value is not None:
        raise InvalidArgument("clear_low_value", "cannot be combined with low_value")
    high = _optional_price(cmd.high_value, "high_value")
    low = _optional_price(cmd.low_value, "low_value")
    rearm = None
    if cmd.rearm_percent is not None:
        rearm = parse_bounded(cmd.rearm_percent, "rearm_percent", low=0.0, high=MAX_REARM_PERCENT)
    cooldown = _optional_period(cmd.cooldown_s, "cooldown_s", minimum=0.0)
    remind = _optional_period(cmd.remind_every_s, "remind_every_s", minimum=MIN_REMIND_EVERY_S)
    old = uow.subscriptions.get(cmd.user_id, ticker)  # carries the user's e-mail
    email = _require_user(uow, cmd.user_id).email if old is None else old.email
    if old is None:  # a new one: room for it with this user, and in the system?
        count = len(uow.subscriptions.for_user(cmd.user_id))
        if count >= quotas.subscriptions_per_user:
            raise QuotaExceeded(
                "ticker",
                f"at most {quotas.subscriptions_per_user} subscriptions per user, and you "
                f"have {count}: remove one first",
            )
        _check_new_tickers(uow, {ticker}, quotas, "ticker")
    if old is None:
        old_high = old_low = old_cooldown = old_remind = None
        old_rearm = DEFAULT_REARM_PERCENT
    else:
        old_high, old_low, old_rearm = old.high_value, old.low_value, old.rearm_percent
        old_cooldown, old_remind = old.cooldown_s, old.remind_every_s
    new_high = None if cmd.clear_high_value else (old_high if high is None else high)
    new_low = None if cmd.clear_low_value else (old_low if low is None else low)
    field = "high_value" if high is not None else "low_value"
    _check_order(new_high, new_low, field, stored=old is not None)
    sub = Subscription(
        subscription_id=ids.new_id() if old is None else old.subscription_id,
        user_id=cmd.user_id,
        email=email,
        ticker=ticker,
        high_value=new_high,
        low_value=new_low,
        rearm_percent=old_rearm if rearm is None else rearm,
        cooldown_s=old_cooldown if cooldown is None else (cooldown or None),
        remind_every_s=old_remind if remind is None else (remind or None),
    )
    high_state, low_state = _store_subscription(uow, sub, old)
    return SubscriptionView.of(sub, high_state, low_state, _ticker_status(uow, ticker))


def remove_subscription(cmd: RemoveSubscription, uow: UnitOfWork) -> Done:
    """Stop watching a ticker; its alert state goes too (its history stays)."""
    ticker = Ticker.parse(cmd.ticker)
    user = _require_user(uow, cmd.user_id)
    sub = uow.subscriptions.get(user.user_id, ticker)
    if sub is None:
        raise NotFound(f"you are not watching {ticker}", field="ticker")
    uow.alert_states.delete_for(sub.subscription_id)
    uow.subscriptions.delete(sub.subscription_id)
    uow.record(SubscriptionRemoved(sub.subscription_id, sub.ticker))
    return Done()


def delete_user(cmd: DeleteUser, uow: UnitOfWork) -> Done:
    """Remove the user and everything stored about them, in one transaction (the bus checked
    the recent login first: `DeleteUser.check_session`)."""
    user = _require_user(uow, cmd.user_id)
    for sub in uow.subscriptions.for_user(user.user_id):
        uow.alert_states.delete_for(sub.subscription_id)
        uow.subscriptions.delete(sub.subscription_id)
        uow.record(SubscriptionRemoved(sub.subscription_id, sub.ticker))
    uow.notifications.delete_for_user(user.user_id)
    uow.requests.forget_subject(user.user_id)
    uow.requests.forget_subject(user.email.value)
    uow.users.delete(user.user_id)
    uow.record(UserDeleted(user.user_id))
    return Done()

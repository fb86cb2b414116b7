"""Command and event handlers: plain functions over ports.

Handlers of idempotent commands run inside the request-ledger transaction that
`messagebus.run_once` opens and commits: they must not commit. The others open and commit
their own unit of work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import attrs

from stockalert.domain.alerting.rules import adopt_change
from stockalert.domain.alerting.tracker import AlertTracker
from stockalert.domain.commands import (
    CleanUp,
    CollectPrices,
    DeleteUser,
    LoadAlerts,
    LoginUser,
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
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from stockalert.domain.events import (
    AlertRaised,
    PriceUpdated,
    SubscriptionRemoved,
    SubscriptionSet,
    UserDeleted,
)
from stockalert.domain.model import (
    DEFAULT_REARM_PERCENT,
    MAX_PERIOD_S,
    MAX_REARM_PERCENT,
    MIN_REMIND_EVERY_S,
    DeliveryStatus,
    Email,
    NotificationRecord,
    Quote,
    RetryPolicy,
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
from stockalert.domain.ports import (
    Clock,
    FetchFailed,
    IdGenerator,
    Mailer,
    MailNotAttempted,
    MailOutcome,
    MailPermanentError,
    MailTemporaryError,
    PasswordHasher,
    PriceResult,
    PriceSource,
    TokenIssuer,
    UnitOfWork,
    UnknownTicker,
)
from stockalert.domain.views import (
    CleanupReport,
    CollectionReport,
    Done,
    LoggedIn,
    SubscriptionView,
    UserRegistered,
)

log = logging.getLogger(__name__)

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
    states = []
    for side in (Side.HIGH, Side.LOW):
        current = uow.alert_states.get(sub.subscription_id, side)
        states.append(adopt_change(side, old, current, sub))
    uow.subscriptions.save(sub)  # first: a state row belongs to an existing subscription
    high, low = states
    uow.alert_states.save(sub.subscription_id, Side.HIGH, high)
    uow.alert_states.save(sub.subscription_id, Side.LOW, low)
    uow.record(SubscriptionSet(sub, high, low))
    return high, low


# ----- idempotent commands (run inside run_once's transaction) -----------------------------


def register_user(
    cmd: RegisterUser,
    uow: UnitOfWork,
    *,
    ids: IdGenerator,
    hasher: PasswordHasher,
    clock: Clock,
) -> UserRegistered:
    """Create a user and their initial subscriptions; all of it or nothing."""
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
    user = User(ids.new_id(), email, hasher.hash(password), clock.now())
    uow.users.add(user)
    for ticker, high, low, rearm in specs:
        sub = Subscription(ids.new_id(), user.user_id, email, ticker, high, low, rearm)
        _store_subscription(uow, sub, None)
    return UserRegistered(user.user_id)


def set_subscription(
    cmd: SetSubscription, uow: UnitOfWork, *, ids: IdGenerator
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
    user = _require_user(uow, cmd.user_id)

    old = uow.subscriptions.get(user.user_id, ticker)
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
        user_id=user.user_id,
        email=user.email,
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
    """Remove the user and everything stored about them, in one transaction."""
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


# ----- authentication ----------------------------------------------------------------------


def login_user(
    cmd: LoginUser,
    uow: UnitOfWork,
    *,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    clock: Clock,
    decoy_hash: str,
) -> LoggedIn:
    """A token for the right e-mail and password; the same answer for every wrong pair."""
    email = Email.parse(cmd.email)
    if not cmd.password:
        raise InvalidArgument("password", "must not be empty")
    with uow:
        user = uow.users.get_by_email(email)
    # Verify against a decoy when the user is unknown, so timing does not reveal accounts.
    matches = hasher.verify(decoy_hash if user is None else user.password_hash, cmd.password)
    if user is None or not matches:
        log.info("event=login_failed")
        raise Unauthenticated("wrong e-mail or password")
    token, expires_at = tokens.issue(user.user_id, clock.now())
    log.info("event=login user_id=%s", user.user_id)
    return LoggedIn(token, expires_at)


# ----- internal commands -------------------------------------------------------------------


def _mark_tickers(
    uow: UnitOfWork,
    results: Mapping[Ticker, PriceResult],
    tickers: set[Ticker],
    stale_after: timedelta,
    now: datetime,
) -> None:
    """ACTIVE, UNKNOWN, PENDING or STALE (no new quote collected for `stale_after`)."""
    with uow:
        for ticker in tickers:
            result = results.get(ticker)
            reason = result.reason if isinstance(result, FetchFailed) else None
            if isinstance(result, UnknownTicker):
                status, reason = TickerStatus.UNKNOWN, "the price source does not know this symbol"
            else:
                fresh_at = uow.quotes.latest_collected_at(ticker)
                if fresh_at is None:
                    status = TickerStatus.PENDING
                elif now - fresh_at > stale_after:
                    status = TickerStatus.STALE
                    reason = f"no new quote since {fresh_at.isoformat()}" + (
                        f" ({reason})" if reason else ""
                    )
                else:
                    status = TickerStatus.ACTIVE
            if uow.tickers.get(ticker) is not status:
                log.info(  # one line per change of status, not per cycle
                    "event=ticker_status ticker=%s status=%s reason=%r", ticker, status, reason
                )
                uow.tickers.save(ticker, status, reason, now)
        uow.commit()


def collect_prices(
    cmd: CollectPrices, uow: UnitOfWork, *, source: PriceSource, clock: Clock
) -> CollectionReport:
    """Fetch every ticker in use in one batch; store and publish the quotes that are new."""
    with uow:
        tickers = uow.subscriptions.tickers_in_use()
    if not tickers:
        return CollectionReport(0, 0)
    results = source.fetch(sorted(tickers, key=lambda t: t.value))
    quotes, unknown, failed = [], [], []
    for ticker in tickers:
        result = results.get(ticker)
        if isinstance(result, Quote):
            quotes.append(result)
        elif isinstance(result, UnknownTicker):
            unknown.append(ticker.value)
        else:
            failed.append(ticker.value)
    stored = record_quotes(RecordQuotes(tuple(quotes)), uow, clock=clock)
    _mark_tickers(uow, results, tickers, timedelta(seconds=cmd.stale_after_s), clock.now())
    report = CollectionReport(len(tickers), stored, tuple(sorted(unknown)), tuple(sorted(failed)))
    log.info(
        "event=collection_cycle tickers=%d stored=%d unknown=%s failed=%s",
        report.tickers,
        report.stored,
        ",".join(report.unknown) or "-",
        ",".join(report.failed) or "-",
    )
    return report


def record_quotes(cmd: RecordQuotes, uow: UnitOfWork, *, clock: Clock) -> int:
    """Store the quotes newer than the newest stored per ticker; returns how many."""
    stored = 0
    with uow:
        collected_at = clock.now()
        for quote in sorted(cmd.quotes, key=lambda q: q.quoted_at):
            try:
                parse_price(quote.price, "price")
            except DomainError as err:
                log.warning("event=quote_rejected ticker=%s reason=%r", quote.ticker, err.message)
                continue
            latest = uow.quotes.latest(quote.ticker)
            if latest is not None and quote.quoted_at <= latest.quoted_at:
                continue
            uow.quotes.add(quote, collected_at)
            uow.record(PriceUpdated(quote))
            stored += 1
        uow.commit()
    return stored


def retry_pending_notifications(
    cmd: RetryPendingNotifications,
    uow: UnitOfWork,
    *,
    mailer: Mailer,
    clock: Clock,
    retry: RetryPolicy,
) -> int:
    """Deliver every due PENDING notification; returns how many got sent.

    Stops early when a whole batch failed temporarily: the server is down, and the rest
    would fail the same way; they stay PENDING until their backoff has passed.
    """
    sent = 0
    tried: set[str] = set()
    while True:
        with uow:
            due = uow.notifications.pending(clock.now(), cmd.batch)
        batch = [r for r in due if r.notification.notification_id not in tried]
        if not batch:
            return sent  # nothing due, or only what this call already tried (no backoff)
        tried.update(r.notification.notification_id for r in batch)
        outcomes = _deliver(batch, uow, mailer, clock, retry)
        sent += outcomes.count(None)
        if all(isinstance(o, MailTemporaryError) for o in outcomes) or len(due) < cmd.batch:
            return sent


# ----- event handlers ----------------------------------------------------------------------


def apply_price_update(event: PriceUpdated, uow: UnitOfWork, *, alerts: AlertTracker) -> None:
    """Run the quote through the alert engine; persist changed sides, raise alerts."""
    alerts.apply(event.quote, uow)


def index_subscription(event: SubscriptionSet, uow: UnitOfWork, *, alerts: AlertTracker) -> None:
    """Keep the engine's index in step with the write model."""
    alerts.upsert(event.subscription, event.high, event.low)


def unindex_subscription(
    event: SubscriptionRemoved, uow: UnitOfWork, *, alerts: AlertTracker
) -> None:
    """Drop a removed subscription from the engine."""
    alerts.remove(event.subscription_id)


def load_alerts(cmd: LoadAlerts, uow: UnitOfWork, *, alerts: AlertTracker) -> None:
    """Rebuild the engine and re-apply the newest quotes: alerts lost in a crash come out."""
    alerts.reload(uow)


def clean_up(cmd: CleanUp, uow: UnitOfWork, *, clock: Clock) -> CleanupReport:
    """Retention: old quotes (keeping the newest N per followed ticker), expired replies."""
    now = clock.now()
    with uow:
        quotes = uow.quotes.prune(now - timedelta(seconds=cmd.quote_retention_s), cmd.keep_quotes)
        replies = uow.requests.expire_before(now - timedelta(seconds=cmd.request_ttl_s))
        uow.commit()
    log.info("event=clean_up quotes_removed=%d replies_expired=%d", quotes, replies)
    return CleanupReport(quotes, replies)


def deliver_notification(
    event: AlertRaised, uow: UnitOfWork, *, mailer: Mailer, clock: Clock, retry: RetryPolicy
) -> None:
    """Send an alert once: the ledger entry exists before the e-mail, sent or not."""
    notification = event.notification
    with uow:
        if uow.users.get(notification.user_id) is None:
            log.info(
                "event=notification_dropped reason=user_deleted notification_id=%s",
                notification.notification_id,
            )
            return
        record = uow.notifications.get(notification.notification_id)
        if record is not None and record.status is not DeliveryStatus.PENDING:
            log.info(
                "event=notification_duplicate notification_id=%s status=%s",
                notification.notification_id,
                record.status,
            )
            return
        if record is None:
            record = NotificationRecord(
                notification, DeliveryStatus.PENDING, created_at=clock.now()
            )
            uow.notifications.add(record)
        uow.commit()
    _deliver([record], uow, mailer, clock, retry)


# Outcomes are committed in groups: one transaction per e-mail would cost more than the
# e-mail, and a crash between the server's "250" and the commit resends at most this many.
_OUTCOMES_PER_COMMIT = 10


def _deliver(
    records: list[NotificationRecord],
    uow: UnitOfWork,
    mailer: Mailer,
    clock: Clock,
    retry: RetryPolicy,
) -> list[MailOutcome]:
    """Send `records` in one mailer call and record each outcome: SENT, FAILED with the
    reason, or still PENDING with the error and the time of its next attempt."""
    outcomes: list[MailOutcome] = []
    updates: list[NotificationRecord] = []
    sending = mailer.send_many([r.notification for r in records])
    try:
        for record, outcome in zip(records, sending, strict=False):
            outcomes.append(outcome)
            updates.append(_after_attempt(record, outcome, clock.now(), retry))
            if len(updates) >= _OUTCOMES_PER_COMMIT:
                _store(updates, uow)
                updates = []
    finally:
        close = getattr(sending, "close", None)
        if close is not None:
            close()  # a generator stops sending here if recording failed
        _store(updates, uow)
    if len(outcomes) != len(records):
        raise RuntimeError(f"the mailer gave {len(outcomes)} outcomes for {len(records)} e-mails")
    return outcomes


def _after_attempt(
    record: NotificationRecord, outcome: MailOutcome, now: datetime, retry: RetryPolicy
) -> NotificationRecord:
    notification = record.notification
    tried = not isinstance(outcome, MailNotAttempted)
    attempts = record.attempts + 1 if tried else record.attempts
    if outcome is None:
        status, error, next_at = DeliveryStatus.SENT, None, None
    elif isinstance(outcome, MailPermanentError):
        status, error, next_at = DeliveryStatus.FAILED, str(outcome), None
    else:
        delay = timedelta(seconds=retry.delay_s(notification.notification_id, max(attempts, 1)))
        status, error, next_at = DeliveryStatus.PENDING, str(outcome), now + delay
    log.log(
        logging.INFO if status is DeliveryStatus.SENT else logging.WARNING,
        "event=notification_%s notification_id=%s to=%s ticker=%s side=%s attempts=%d "
        "error=%r next_attempt_at=%s",
        {"SENT": "sent", "PENDING": "deferred", "FAILED": "failed"}[status.value],
        notification.notification_id,
        notification.email,
        notification.ticker,
        notification.side,
        attempts,
        error,
        next_at.isoformat() if next_at else "-",
    )
    return attrs.evolve(
        record,
        status=status,
        attempts=attempts,
        last_error=error,
        sent_at=now if status is DeliveryStatus.SENT else None,
        next_attempt_at=next_at,
    )


def _store(updates: list[NotificationRecord], uow: UnitOfWork) -> None:
    if not updates:
        return
    with uow:
        for updated in updates:
            if uow.notifications.get(updated.notification.notification_id) is not None:
                uow.notifications.update(updated)  # not if the user was deleted meanwhile
        uow.commit()

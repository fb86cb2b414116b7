"""Price collection: one cycle fetches every ticker in use, stores the new quotes and marks
each ticker's status for its users."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import attrs

from stockalert.domain.commands import CollectPrices, RecordQuotes
from stockalert.domain.errors import DomainError
from stockalert.domain.events import PriceUpdated
from stockalert.domain.model import Quote, Ticker, TickerStatus, parse_price
from stockalert.domain.ports import (
    NO_TELEMETRY,
    Clock,
    FetchFailed,
    IdGenerator,
    PriceResult,
    PriceSource,
    Telemetry,
    UnitOfWork,
    UnknownTicker,
)
from stockalert.domain.views import CollectionReport

log = logging.getLogger(__name__)


def _mark_tickers(
    uow: UnitOfWork,
    results: Mapping[Ticker, PriceResult],
    tickers: set[Ticker],
    stale_after: timedelta,
    now: datetime,
) -> None:
    """ACTIVE, UNKNOWN, PENDING or STALE (no new quote collected for `stale_after`)."""
    with uow:
        # Two reads for every ticker (a cycle may cover thousands), not two per ticker.
        collected = uow.quotes.latest_collected_many(tickers)
        known = uow.tickers.get_many(tickers)
        for ticker in tickers:
            result = results.get(ticker)
            reason = result.reason if isinstance(result, FetchFailed) else None
            if isinstance(result, UnknownTicker):
                status, reason = TickerStatus.UNKNOWN, "the price source does not know this symbol"
            else:
                fresh_at = collected.get(ticker)
                if fresh_at is None:
                    status = TickerStatus.PENDING
                elif now - fresh_at > stale_after:
                    status = TickerStatus.STALE
                    reason = f"no new quote since {fresh_at.isoformat()}" + (
                        f" ({reason})" if reason else ""
                    )
                else:
                    status = TickerStatus.ACTIVE
            if known.get(ticker) is not status:
                log.info(  # one line per change of status, not per cycle
                    "event=ticker_status ticker=%s status=%s reason=%r", ticker, status, reason
                )
                uow.tickers.save(ticker, status, reason, now)
        uow.commit()


def collect_prices(
    cmd: CollectPrices,
    uow: UnitOfWork,
    *,
    source: PriceSource,
    clock: Clock,
    ids: IdGenerator,
    telemetry: Telemetry = NO_TELEMETRY,
) -> CollectionReport:
    """Fetch every ticker in use in one batch; store and publish the quotes that are new."""
    started = clock.now()
    with uow:
        tickers = uow.subscriptions.tickers_in_use()
    if not tickers:
        telemetry.collected(CollectionReport(0, 0), (clock.now() - started).total_seconds())
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
    stored = record_quotes(RecordQuotes(tuple(quotes)), uow, clock=clock, ids=ids)
    _mark_tickers(uow, results, tickers, timedelta(seconds=cmd.stale_after_s), clock.now())
    report = CollectionReport(len(tickers), stored, tuple(sorted(unknown)), tuple(sorted(failed)))
    telemetry.collected(report, (clock.now() - started).total_seconds())
    # A routine cycle is DEBUG (a terminal running `stockalert run &` stays quiet); what
    # users need to know (a ticker turning UNKNOWN or STALE) has its own line above.
    log.debug(
        "event=collection_cycle tickers=%d stored=%d unknown=%d failed=%d",
        report.tickers,
        report.stored,
        len(report.unknown),
        len(report.failed),
    )
    return report


def record_quotes(cmd: RecordQuotes, uow: UnitOfWork, *, clock: Clock, ids: IdGenerator) -> int:
    """Store the quotes newer than the newest stored per ticker, each with a correlation id
    (a new one, unless the quote came with one); returns how many."""
    stored: list[Quote] = []
    with uow:
        collected_at = clock.now()
        latest = {
            t: q.quoted_at
            for t, q in uow.quotes.latest_many({q.ticker for q in cmd.quotes}).items()
        }
        for fetched in sorted(cmd.quotes, key=lambda q: q.quoted_at):
            try:
                parse_price(fetched.price, "price")
            except DomainError as err:
                log.warning("event=quote_rejected ticker=%s reason=%r", fetched.ticker, err.message)
                continue
            newest = latest.get(fetched.ticker)
            if newest is not None and fetched.quoted_at <= newest:
                continue
            latest[fetched.ticker] = fetched.quoted_at
            quote = fetched
            if quote.correlation_id is None:
                quote = attrs.evolve(fetched, correlation_id=ids.new_id())
            uow.quotes.add(quote, collected_at)
            uow.record(PriceUpdated(quote))
            stored.append(quote)
        uow.commit()
    for quote in stored:  # the first line of each quote's correlation id: where it starts
        log.info(
            "event=quote_stored ticker=%s price=%s quoted_at=%s correlation_id=%s",
            quote.ticker,
            quote.price,
            quote.quoted_at.isoformat(),
            quote.correlation_id,
        )
    return len(stored)

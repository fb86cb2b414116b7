"""Retention: old quotes and expired stored replies go."""

from __future__ import annotations

import logging
from datetime import timedelta

from stockalert.domain.commands import CleanUp
from stockalert.domain.model import LoginThrottle
from stockalert.domain.ports import Clock, UnitOfWork
from stockalert.domain.views import CleanupReport

log = logging.getLogger(__name__)


def clean_up(cmd: CleanUp, uow: UnitOfWork, *, clock: Clock) -> CleanupReport:
    """Retention: old quotes (keeping the newest N per followed ticker), expired replies."""
    now = clock.now()
    with uow:
        quotes = uow.quotes.prune(now - timedelta(seconds=cmd.quote_retention_s), cmd.keep_quotes)
        replies = uow.requests.expire_before(now - timedelta(seconds=cmd.request_ttl_s))
        # Throttle counts past their window count for nothing any more.
        uow.login_failures.forget_before(now - timedelta(seconds=LoginThrottle().window_s))
        uow.commit()
    log.log(
        logging.INFO if quotes or replies else logging.DEBUG,  # a line only when it removed some
        "event=clean_up quotes_removed=%d replies_expired=%d",
        quotes,
        replies,
    )
    return CleanupReport(quotes, replies)

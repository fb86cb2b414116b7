"""Composition root: the dependency-injector container that builds stockalert from config."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dependency_injector import containers, providers
from sqlalchemy import Engine

from stockalert import bootstrap
from stockalert.adapters import memory
from stockalert.adapters.breaker import BreakerPriceSource, CircuitBreaker
from stockalert.adapters.grpc.server import serve
from stockalert.adapters.outbox import OutboxMailer
from stockalert.adapters.passwords import Argon2Hasher
from stockalert.adapters.replay import ReplayPriceSource
from stockalert.adapters.smtp import SmtpMailer, SmtpSettings
from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.read_model import SqlReadModel
from stockalert.adapters.sql.uow import SqlUnitOfWork
from stockalert.adapters.system import SystemClock, UuidIds
from stockalert.adapters.tokens import JwtTokens
from stockalert.domain.alerting.tracker import AlertTracker
from stockalert.domain.model import RetryPolicy
from stockalert.domain.ports import PriceSource


def yfinance_quote_source(cache_dir: Path, timeout_s: float) -> PriceSource:
    """The production yfinance source; yfinance (and pandas) load only when it is chosen."""
    from stockalert.adapters.yfinance_quote_source import (  # noqa: PLC0415
        YFinanceQuotePriceSource,
    )

    return YFinanceQuotePriceSource(cache_dir=cache_dir, timeout_s=timeout_s)


def yfinance_chart_source(cache_dir: Path, timeout_s: float) -> PriceSource:
    """The chart-API fallback source, loaded only when chosen."""
    from stockalert.adapters.yfinance_source import YFinancePriceSource  # noqa: PLC0415

    return YFinancePriceSource(cache_dir=cache_dir, timeout_s=timeout_s)


def yfinance_cache_dir(state_dir: str) -> Path:
    """yfinance's caches live in our state folder, nowhere else."""
    return Path(state_dir) / "yfinance"


def smtp_mailer(settings: dict[str, Any]) -> Iterator[SmtpMailer]:
    """Resource: the SMTP mailer, its connection closed (QUIT) on shutdown."""
    mailer = SmtpMailer(SmtpSettings(**settings))
    try:
        yield mailer
    finally:
        mailer.close()


def retry_policy(settings: dict[str, float] | None) -> RetryPolicy:
    """Backoff of PENDING notifications (STOCKALERT_MAIL_RETRY_*); defaults when unset."""
    return RetryPolicy(**settings) if settings else RetryPolicy()


def sql_engine(url: str, read_only: bool = False) -> Iterator[Engine]:
    """Resource: a SQLAlchemy engine, disposed (pool closed) on shutdown."""
    engine = make_engine(url, read_only=read_only)
    try:
        yield engine
    finally:
        engine.dispose()


class Container(containers.DeclarativeContainer):
    """Everything the embedded system needs, over in-memory storage.

    Entry points fill `config` from the environment (`entrypoints.settings`); tests fill it
    from `in_memory_config()` and override single providers with fakes.
    """

    config = providers.Configuration(strict=True)

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidIds)
    hasher = providers.Singleton(Argon2Hasher)
    tokens = providers.Singleton(JwtTokens, secret=config.auth_secret)

    store = providers.Singleton(memory.MemoryStore)
    db_engine = providers.Resource(sql_engine, url=config.db_url)
    read_db_engine = providers.Resource(sql_engine, url=config.read_db_url, read_only=True)
    uow = providers.Selector(
        config.storage,
        memory=providers.Factory(memory.MemoryUnitOfWork, store=store),
        sql=providers.Factory(SqlUnitOfWork, engine=db_engine, now=clock.provided.now),
    )
    read_model = providers.Selector(
        config.storage,
        memory=providers.Singleton(memory.MemoryReadModel, store=store),
        sql=providers.Singleton(SqlReadModel, engine=read_db_engine),
    )

    alerts = providers.Singleton(AlertTracker)
    mailer = providers.Selector(
        config.mail.kind,
        memory=providers.Singleton(memory.MemoryMailer),
        outbox=providers.Singleton(
            OutboxMailer, directory=providers.Factory(Path, config.mail.outbox_dir)
        ),
        smtp=providers.Resource(smtp_mailer, settings=config.mail.smtp),
    )
    breaker = providers.Singleton(
        CircuitBreaker,
        clock=providers.Object(time.monotonic),
        failure_threshold=config.breaker.failures,
        recovery_timeout_s=config.breaker.recovery_s,
        slow_call_s=config.breaker.slow_s,
    )
    price_source = providers.Singleton(
        BreakerPriceSource,
        source=providers.Selector(
            config.prices.kind,
            static=providers.Singleton(memory.StaticPriceSource),
            replay=providers.Singleton(
                ReplayPriceSource, path=providers.Factory(Path, config.prices.path)
            ),
            # The quote scraper (about 1 ms CPU per ticker); the chart path below is the
            # fallback if a yfinance upgrade breaks it (STOCKALERT_PRICE_SOURCE=yfinance-chart).
            yfinance=providers.Singleton(
                yfinance_quote_source,
                cache_dir=providers.Factory(yfinance_cache_dir, config.state_dir),
                timeout_s=config.fetch_timeout_s,
            ),
            yfinance_chart=providers.Singleton(
                yfinance_chart_source,
                cache_dir=providers.Factory(yfinance_cache_dir, config.state_dir),
                timeout_s=config.fetch_timeout_s,
            ),
        ),
        breaker=breaker,
    )

    bus = providers.Singleton(
        bootstrap.build_bus,
        uow_factory=uow.provider,
        read_model=read_model,
        alerts=alerts,
        mailer=mailer,
        ids=ids,
        hasher=hasher,
        tokens=tokens,
        source=price_source,
        clock=clock,
        alerting=config.alerting,
        retry=providers.Factory(retry_policy, config.mail_retry),
    )

    grpc_server = providers.Resource(serve, bus=bus, clock=clock, address=config.grpc_addr)


def in_memory_config(**overrides: Any) -> dict[str, Any]:
    """A complete in-memory configuration, for tests and library use."""
    config: dict[str, Any] = {
        "storage": "memory",
        "db_url": "memory://",
        "read_db_url": "memory://",
        "state_dir": ".stockalert",
        "auth_secret": "test-secret-that-is-long-enough-for-hs256-signing",
        "grpc_addr": "127.0.0.1:0",
        "collect_interval": 1.0,
        "stale_after_s": 3600.0,
        "fetch_timeout_s": 10.0,
        "alerting": True,
        "breaker": {"failures": 3, "recovery_s": 300.0, "slow_s": 30.0},
        "cleaner": {
            "quote_retention_s": 7 * 24 * 3600.0,
            "keep_quotes": 20,
            "request_ttl_s": 24 * 3600.0,
            "interval_s": 3600.0,
        },
        "mail": {"kind": "memory", "outbox_dir": "outbox"},
        "mail_retry": {"base_s": 30.0, "max_s": 900.0},
        "prices": {"kind": "static", "path": ""},
    }
    config.update(overrides)
    return config

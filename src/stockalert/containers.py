"""Composition root: dependency-injector containers, a core one and one per role.

`Core` holds what every role shares (configuration, clock, ids, storage). Each use case is a
part container over the core (`Authentication`, `Accounts`, `Queries`, `Collection`,
`Alerting`, `Delivery`, `Cleanup`) that provides its adapters and its handler set. A role
container assembles the core and the parts that role runs into one bus; `Embedded` (the
`stockalert run` process) assembles all of them, so events flow between them in process.
A role builds only what it uses: providers are created when first asked for, and a role
asks only for its parts (the query API never opens a write connection nor loads yfinance).

Entry points fill `config` from the environment (`entrypoints.settings`); tests fill it from
`in_memory_config()` and override single providers with fakes (`tests/wiring.py`).
"""

from __future__ import annotations

import functools
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from dependency_injector import containers, providers
from sqlalchemy import Engine

from stockalert import bootstrap
from stockalert.adapters.breaker import BreakerPriceSource, CircuitBreaker
from stockalert.adapters.grpc.server import serve
from stockalert.adapters.kafka import codec
from stockalert.adapters.kafka.topics import Topics
from stockalert.adapters.mail.eml_files import OutboxMailer
from stockalert.adapters.memory.fakes import MemoryMailer, StaticPriceSource
from stockalert.adapters.memory.storage import (
    MemoryOutboxStore,
    MemoryReadModel,
    MemoryStore,
    MemoryUnitOfWork,
)
from stockalert.adapters.outbox import OutboxEncoder, OutboxStore
from stockalert.adapters.passwords import Argon2Hasher
from stockalert.adapters.replay import ReplayPriceSource
from stockalert.adapters.sql.engine import make_engine
from stockalert.adapters.sql.outbox import SqlOutboxStore
from stockalert.adapters.sql.read_model import SqlReadModel
from stockalert.adapters.sql.uow import SqlUnitOfWork
from stockalert.adapters.system import SystemClock, UuidIds
from stockalert.adapters.telemetry import Metrics, PrometheusTelemetry
from stockalert.adapters.tokens import JwtTokens, KeyedDigest
from stockalert.domain.alerting.tracker import AlertTracker
from stockalert.domain.commands import (
    ApplyQuotes,
    AssignRecipients,
    Command,
    DeliverNotifications,
    DropAlerts,
    LoadAlerts,
    RevokeRecipients,
)
from stockalert.domain.events import AlertRaised, Event, PriceUpdated
from stockalert.domain.handlers.delivery import Lane
from stockalert.domain.messagebus import HandlerSet, MessageBus
from stockalert.domain.model import LoginThrottle, Quotas, RetryPolicy
from stockalert.domain.ports import Mailer, PriceSource, UnitOfWork
from stockalert.domain.sharding import Shards

# Heavy adapters (yfinance with pandas, smtplib with a worker process) are imported inside
# the factories below, only by the role and the settings that use them.


def yfinance_quote_source(cache_dir: Path, timeout_s: float) -> PriceSource:
    """The production yfinance source; yfinance (and pandas) load only when it is chosen."""
    from stockalert.adapters.yfinance.quote import YFinanceQuoteSource

    return YFinanceQuoteSource(cache_dir=cache_dir, timeout_s=timeout_s)


def yfinance_chart_source(cache_dir: Path, timeout_s: float) -> PriceSource:
    """The chart-API fallback source, loaded only when chosen."""
    from stockalert.adapters.yfinance.chart import YFinanceChartSource

    return YFinanceChartSource(cache_dir=cache_dir, timeout_s=timeout_s)


def yfinance_cache_dir(state_dir: str) -> Path:
    """yfinance's caches live in our state folder, nowhere else."""
    return Path(state_dir) / "yfinance"


def smtp_mailer(settings: dict[str, Any]) -> Iterator[Mailer]:
    """Resource: the SMTP mailer, its connection closed (QUIT) on shutdown."""
    from stockalert.adapters.mail.smtp import SmtpMailer, SmtpSettings

    mailer = SmtpMailer(SmtpSettings(**settings))
    try:
        yield mailer
    finally:
        mailer.close()


def smtp_lanes(mailer: Any, uow: Callable[[], UnitOfWork]) -> list[Lane]:
    """The SMTP mailer's siblings (STOCKALERT_SMTP_CONNECTIONS - 1), each a delivery lane
    recording its outcomes through units of work of its own."""
    return [Lane(sibling, uow) for sibling in mailer.lanes()[1:]]


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


# ----- the core and the parts ----------------------------------------------------------------


def topics_of(settings: dict[str, Any]) -> Topics:
    """The topic names and settings of STOCKALERT_KAFKA_TOPIC_PREFIX, _PARTITIONS, ..."""
    return Topics(**settings)


def outbox_encoder(topics: Topics) -> OutboxEncoder:
    """What the unit of work writes to the outbox: the events other processes must hear of,
    as Kafka messages."""
    return functools.partial(codec.encode, topics=topics)


class Core(containers.DeclarativeContainer):
    """Configuration, clock, ids and storage: the write model (units of work, writing the
    outbox when the roles talk through Kafka) and the read model (queries;
    `STOCKALERT_READ_DB_URL` may point it at a replica)."""

    config = providers.Configuration(strict=True)

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidIds)
    metrics = providers.Singleton(Metrics, role=config.role)
    quotas = providers.Singleton(
        Quotas,
        subscriptions_per_user=config.limits.subscriptions_per_user,
        tickers=config.limits.tickers,
    )
    throttle = providers.Singleton(LoginThrottle, base_delay_s=config.limits.login_delay_s)
    telemetry = providers.Singleton(PrometheusTelemetry, metrics=metrics)

    topics = providers.Singleton(topics_of, config.kafka.topics)
    outbox = providers.Selector(
        config.transport,
        inprocess=providers.Object(None),
        kafka=providers.Singleton(outbox_encoder, topics),
    )
    store = providers.Singleton(MemoryStore)
    db_engine = providers.Resource(sql_engine, url=config.db_url)
    read_db_engine = providers.Resource(sql_engine, url=config.read_db_url, read_only=True)
    uow = providers.Selector(
        config.storage,
        memory=providers.Factory(MemoryUnitOfWork, store=store, outbox=outbox),
        sql=providers.Factory(
            SqlUnitOfWork, engine=db_engine, now=clock.provided.now, outbox=outbox
        ),
    )
    read_model = providers.Selector(
        config.storage,
        memory=providers.Singleton(MemoryReadModel, store=store),
        sql=providers.Singleton(SqlReadModel, engine=read_db_engine),
    )


class Authentication(containers.DeclarativeContainer):
    """Bearer tokens, and the query that tells whose a token is (both APIs)."""

    config = providers.Configuration(strict=True)
    core = providers.DependenciesContainer()

    tokens = providers.Singleton(JwtTokens, secret=config.auth_secret)
    digest = providers.Singleton(KeyedDigest, secret=config.auth_secret)
    handlers = providers.Singleton(
        bootstrap.authentication, read_model=core.read_model, tokens=tokens, clock=core.clock
    )


class Accounts(containers.DeclarativeContainer):
    """The command side: register, log in, subscriptions, account deletion."""

    core = providers.DependenciesContainer()
    auth = providers.DependenciesContainer()

    hasher = providers.Singleton(Argon2Hasher)
    handlers = providers.Singleton(
        bootstrap.account_commands,
        ids=core.ids,
        hasher=hasher,
        tokens=auth.tokens,
        clock=core.clock,
        quotas=core.quotas,
        digest=auth.digest,
        throttle=core.throttle,
    )


class Queries(containers.DeclarativeContainer):
    """The query side: reads through the read model only."""

    core = providers.DependenciesContainer()

    handlers = providers.Singleton(bootstrap.read_queries, read_model=core.read_model)


def watched_breaker(metrics: Metrics, **settings: Any) -> CircuitBreaker:
    """The price source's circuit breaker, its state a metric."""
    breaker = CircuitBreaker(**settings)
    metrics.watch_breaker(breaker.name, lambda: breaker.state.value)
    return breaker


class Collection(containers.DeclarativeContainer):
    """The price source behind its circuit breaker, and the collection cycle."""

    config = providers.Configuration(strict=True)
    core = providers.DependenciesContainer()

    breaker = providers.Singleton(
        watched_breaker,
        metrics=core.metrics,
        clock=providers.Object(time.monotonic),
        failure_threshold=config.breaker.failures,
        recovery_timeout_s=config.breaker.recovery_s,
        slow_call_s=config.breaker.slow_s,
    )
    price_source = providers.Singleton(
        BreakerPriceSource,
        source=providers.Selector(
            config.prices.kind,
            static=providers.Singleton(StaticPriceSource),
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
    handlers = providers.Singleton(
        bootstrap.price_collection,
        source=price_source,
        clock=core.clock,
        ids=core.ids,
        telemetry=core.telemetry,
    )


class Alerting(containers.DeclarativeContainer):
    """The alert engine of this process (every ticker, in the embedded run; an alert-system
    instance gives it the shards of its partitions)."""

    core = providers.DependenciesContainer()

    shards = providers.Singleton(Shards.everything)
    tracker = providers.Singleton(AlertTracker, shards=shards)
    handlers = providers.Singleton(
        bootstrap.alert_evaluation, alerts=tracker, clock=core.clock, telemetry=core.telemetry
    )


class Delivery(containers.DeclarativeContainer):
    """The mailer (SMTP, `.eml` files, or in memory) and the notifier's handlers."""

    config = providers.Configuration(strict=True)
    core = providers.DependenciesContainer()

    mailer = providers.Selector(
        config.mail.kind,
        memory=providers.Singleton(MemoryMailer),
        outbox=providers.Singleton(
            OutboxMailer, directory=providers.Factory(Path, config.mail.outbox_dir)
        ),
        smtp=providers.Resource(smtp_mailer, settings=config.mail.smtp),
    )
    # More SMTP connections sending side by side (STOCKALERT_SMTP_CONNECTIONS).
    lanes = providers.Selector(
        config.mail.kind,
        memory=providers.Object(()),
        outbox=providers.Object(()),
        smtp=providers.Singleton(smtp_lanes, mailer=mailer, uow=core.uow.provider),
    )
    # Every user; a notifier instance on Kafka: those of its to-notifier partitions.
    recipients = providers.Singleton(Shards.everything)
    handlers = providers.Singleton(
        bootstrap.notification_delivery,
        mailer=mailer,
        clock=core.clock,
        retry=providers.Factory(retry_policy, config.mail_retry),
        recipients=recipients,
        lanes=lanes,
        telemetry=core.telemetry,
    )


def kafka_producer(settings: dict[str, Any]) -> Iterator[Any]:
    """Resource: the Kafka producer, flushed on shutdown (confluent-kafka loads only here)."""
    from stockalert.adapters.kafka.producer import kafka_producer as resource

    yield from resource(settings)


def outbox_relay(
    store: OutboxStore, producer: Any, bootstrap: str, topics: Topics, now: Any, interval_s: float
) -> Any:
    """The relay publishing the outbox to Kafka (one at a time, through a lease)."""
    from stockalert.adapters.kafka.relay import KafkaOutboxLog, OutboxRelay

    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    names = [s.name for s in topics.specs() if s.name != topics.dead_letter]
    return OutboxRelay(
        store, KafkaOutboxLog(producer, bootstrap), names, owner, now, interval_s=interval_s
    )


class Messaging(containers.DeclarativeContainer):
    """Kafka for a role that writes the outbox: the producer and the outbox relay."""

    config = providers.Configuration(strict=True)
    core = providers.DependenciesContainer()

    producer = providers.Resource(kafka_producer, settings=config.kafka.producer)
    outbox_store = providers.Selector(
        config.storage,
        memory=providers.Singleton(MemoryOutboxStore, store=core.store),
        sql=providers.Singleton(SqlOutboxStore, engine=core.db_engine, now=core.clock.provided.now),
    )
    relay = providers.Singleton(
        outbox_relay,
        store=outbox_store,
        producer=producer.provider,  # made at the first publish, not with the bus
        bootstrap=config.kafka.bootstrap,
        topics=core.topics,
        now=core.clock.provided.now,
        interval_s=config.kafka.relay_interval_s,
    )
    # The relay wakes as soon as a commit wrote the outbox (else it looks every interval).
    handlers = providers.Selector(
        config.transport,
        inprocess=providers.Object(HandlerSet()),
        kafka=providers.Singleton(
            bootstrap.outbox_wakeups, relay=relay, published=providers.Object(codec.PUBLISHED)
        ),
    )


class Cleanup(containers.DeclarativeContainer):
    """Retention."""

    core = providers.DependenciesContainer()

    handlers = providers.Singleton(bootstrap.retention, clock=core.clock)


# ----- roles -----------------------------------------------------------------------------------


def _bus(core: Any, *parts: Any, secret_digest: Any = None) -> providers.Singleton[Any]:
    return providers.Singleton(
        bootstrap.build_bus,
        uow_factory=core.uow.provider,
        clock=core.clock,
        handler_sets=providers.List(*(part.handlers for part in parts)),
        telemetry=core.telemetry,
        secret_digest=secret_digest,
    )


def _grpc_server(
    bus: Any, core: Any, address: Any, services: tuple[str, ...]
) -> providers.Resource[Any]:
    return providers.Resource(
        serve,
        bus=bus,
        address=address,
        services=services,
        max_workers=core.config.grpc_workers,
        metrics=core.metrics,
        max_request_bytes=core.config.limits.request_bytes,
    )


class CommandApi(containers.DeclarativeContainer):
    """`serve command-api`: CommandService on STOCKALERT_GRPC_ADDR; with Kafka, subscription
    changes go out through the outbox."""

    config = providers.Configuration(strict=True)
    core = providers.Container(Core, config=config)
    auth = providers.Container(Authentication, config=config, core=core)
    accounts = providers.Container(Accounts, core=core, auth=auth)
    messaging = providers.Container(Messaging, config=config, core=core)
    bus = _bus(core, auth, accounts, messaging, secret_digest=auth.digest)
    grpc_server = _grpc_server(bus, core, config.grpc_addr, ("command",))


class QueryApi(containers.DeclarativeContainer):
    """`serve query-api`: QueryService on STOCKALERT_QUERY_ADDR, over the read model."""

    config = providers.Configuration(strict=True)
    core = providers.Container(Core, config=config)
    auth = providers.Container(Authentication, config=config, core=core)
    queries = providers.Container(Queries, core=core)
    bus = _bus(core, auth, queries)
    grpc_server = _grpc_server(bus, core, config.query_addr, ("query",))


class Collector(containers.DeclarativeContainer):
    """`serve collector`: the collection cycle; with Kafka, each new quote goes out to
    to-alert-system through the outbox."""

    config = providers.Configuration(strict=True)
    core = providers.Container(Core, config=config)
    collection = providers.Container(Collection, config=config, core=core)
    messaging = providers.Container(Messaging, config=config, core=core)
    bus = _bus(core, collection, messaging)


def event_consumer(
    settings: dict[str, Any],
    group: str,
    topic: str,
    bus: MessageBus,
    dead_letters: Any,
    dead_letter_topic: str,
    assigned: Callable[[frozenset[int], int], Command] | None = None,
    revoked: Callable[[frozenset[int]], Command] | None = None,
    follow: bool = False,
    batch: Callable[[Sequence[Event]], tuple[Command | None, list[Event]]] | None = None,
    metrics: Metrics | None = None,
) -> Any:
    """A consumer of `topic` handing each event to the bus (confluent-kafka loads only here);
    partitions assigned and revoked become the commands `assigned` and `revoked` make. With
    `batch`, what arrived together becomes one command (and the events it does not take are
    handed over one by one)."""
    from stockalert.adapters.kafka.consumer import ConsumerSettings, KafkaEventConsumer

    def handle_batch(events: Sequence[Event]) -> None:
        assert batch is not None
        command, others = batch(events)
        if command is not None:
            bus.handle(command)
        for event in others:
            bus.publish(event)

    return KafkaEventConsumer(
        ConsumerSettings(group_id=group, **settings),
        [topic],
        bus.publish,
        dead_letters,
        dead_letter_topic,
        on_assign=None if assigned is None else lambda p, n: bus.handle(assigned(p, n)),
        on_revoke=None if revoked is None else lambda p: bus.handle(revoked(p)),
        follow=follow,
        metrics=metrics,
        handle_batch=None if batch is None else handle_batch,
    )


def quotes_batch(events: Sequence[Event]) -> tuple[Command | None, list[Event]]:
    """The quotes among what an alert-system read together, applied in one transaction;
    the other events."""
    quotes = tuple(e.quote for e in events if isinstance(e, PriceUpdated))
    others = [e for e in events if not isinstance(e, PriceUpdated)]
    return (ApplyQuotes(quotes) if quotes else None), others


def notifications_batch(events: Sequence[Event]) -> tuple[Command | None, list[Event]]:
    """The notifications among what a notifier read together, delivered together; the other
    events."""
    found = tuple(e.notification for e in events if isinstance(e, AlertRaised))
    others = [e for e in events if not isinstance(e, AlertRaised)]
    return (DeliverNotifications(found) if found else None), others


class AlertSystem(containers.DeclarativeContainer):
    """`serve alert-system`: a member of the alert-system group on to-alert-system; it owns
    the tickers of its partitions, follows every subscription change, and its notifications
    go out to to-notifier through the outbox."""

    config = providers.Configuration(strict=True)
    core = providers.Container(Core, config=config)
    alerting = providers.Container(Alerting, core=core, shards=providers.Singleton(Shards))
    messaging = providers.Container(Messaging, config=config, core=core)
    bus = _bus(core, alerting, messaging)
    quotes = providers.Singleton(
        event_consumer,
        settings=config.kafka.consumer,
        group=core.topics.provided.group.call("alert-system"),
        topic=core.topics.provided.to_alert_system,
        bus=bus,
        dead_letters=messaging.producer,
        dead_letter_topic=core.topics.provided.dead_letter,
        metrics=core.metrics,
        assigned=providers.Object(LoadAlerts),
        revoked=providers.Object(DropAlerts),
        batch=providers.Object(quotes_batch),
    )
    changes = providers.Singleton(
        event_consumer,
        settings=config.kafka.consumer,
        group=core.topics.provided.group.call("alert-system-follower"),
        topic=core.topics.provided.subscription_changes,
        bus=bus,
        dead_letters=messaging.producer,
        dead_letter_topic=core.topics.provided.dead_letter,
        metrics=core.metrics,
        follow=True,
    )


class Notifier(containers.DeclarativeContainer):
    """`serve notifier`: delivery of the PENDING notifications; with Kafka, a member of the
    notifier group on to-notifier, delivering to the users of its partitions."""

    config = providers.Configuration(strict=True)
    core = providers.Container(Core, config=config)
    delivery = providers.Container(
        Delivery,
        config=config,
        core=core,
        recipients=providers.Selector(
            config.transport,
            inprocess=providers.Singleton(Shards.everything),
            kafka=providers.Singleton(Shards),
        ),
    )
    messaging = providers.Container(Messaging, config=config, core=core)
    bus = _bus(core, delivery)
    notifications = providers.Singleton(
        event_consumer,
        settings=config.kafka.consumer,
        group=core.topics.provided.group.call("notifier"),
        topic=core.topics.provided.to_notifier,
        bus=bus,
        dead_letters=messaging.producer,
        dead_letter_topic=core.topics.provided.dead_letter,
        metrics=core.metrics,
        assigned=providers.Object(AssignRecipients),
        revoked=providers.Object(RevokeRecipients),
        batch=providers.Object(notifications_batch),
    )


class Cleaner(containers.DeclarativeContainer):
    """`serve cleaner`: retention."""

    config = providers.Configuration(strict=True)
    core = providers.Container(Core, config=config)
    cleanup = providers.Container(Cleanup, core=core)
    bus = _bus(core, cleanup)


class Embedded(containers.DeclarativeContainer):
    """`stockalert run`: every part on one bus, both services on STOCKALERT_GRPC_ADDR."""

    config = providers.Configuration(strict=True)
    core = providers.Container(Core, config=config)
    auth = providers.Container(Authentication, config=config, core=core)
    accounts = providers.Container(Accounts, core=core, auth=auth)
    queries = providers.Container(Queries, core=core)
    collection = providers.Container(Collection, config=config, core=core)
    alerting = providers.Container(Alerting, core=core)
    delivery = providers.Container(Delivery, config=config, core=core)
    cleanup = providers.Container(Cleanup, core=core)
    bus = _bus(
        core,
        auth,
        accounts,
        queries,
        collection,
        alerting,
        delivery,
        cleanup,
        secret_digest=auth.digest,
    )
    grpc_server = _grpc_server(bus, core, config.grpc_addr, ("command", "query"))


def kafka_administrator(bootstrap: str, client_id: str) -> Any:
    """The admin client of the kafka-admin role (confluent-kafka loads only here)."""
    from stockalert.adapters.kafka.admin import KafkaAdministrator

    return KafkaAdministrator(bootstrap, client_id)


def kafka_administration(admin: Any, topics: Topics, metrics: Metrics) -> HandlerSet:
    """The kafka-admin role's handler set."""
    from stockalert.adapters.kafka.admin import administration

    return administration(admin=admin, topics=topics, metrics=metrics)


class NoStorage:
    """kafka-admin's unit of work: it has no database, and its handlers never use one."""

    def __enter__(self) -> NoStorage:
        raise RuntimeError("the kafka-admin role has no database")

    def __exit__(self, *exc: object) -> None:
        return None

    def collect_events(self) -> Iterator[Any]:
        return iter(())


def no_storage() -> UnitOfWork:
    """The unit of work of a role without a database."""
    return cast("UnitOfWork", NoStorage())


class KafkaAdmin(containers.DeclarativeContainer):
    """`serve kafka-admin`: topics and cluster health; no database."""

    config = providers.Configuration(strict=True)
    clock = providers.Singleton(SystemClock)
    metrics = providers.Singleton(Metrics, role=config.role)
    topics = providers.Singleton(topics_of, config.kafka.topics)
    admin = providers.Singleton(
        kafka_administrator, bootstrap=config.kafka.bootstrap, client_id=config.kafka.client_id
    )
    bus = providers.Singleton(
        bootstrap.build_bus,
        uow_factory=providers.Object(no_storage),
        clock=clock,
        handler_sets=providers.List(
            providers.Singleton(kafka_administration, admin, topics, metrics)
        ),
    )


def in_memory_config(**overrides: Any) -> dict[str, Any]:
    """A complete in-memory configuration of every part, for tests and library use."""
    config: dict[str, Any] = {
        "storage": "memory",
        "db_url": "memory://",
        "read_db_url": "memory://",
        "state_dir": ".stockalert",
        "auth_secret": "test-secret-that-is-long-enough-for-hs256-signing",
        "grpc_addr": "127.0.0.1:0",
        "query_addr": "127.0.0.1:0",
        "grpc_workers": 8,
        "limits": {
            "subscriptions_per_user": 100,
            "tickers": 5_000,
            "request_bytes": 65_536,
            "login_delay_s": 1.0,
        },
        "role": "library",
        "metrics_addr": None,
        "log_format": "text",
        "collect_interval": 1.0,
        "delivery_interval": 1.0,
        "stale_after_s": 3600.0,
        "fetch_timeout_s": 10.0,
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
        "transport": "inprocess",
        "kafka": {
            "bootstrap": "",
            "client_id": "stockalert-test",
            "topics": {"prefix": "", "partitions": 6, "replication": 3, "min_insync": 2},
            "producer": {
                "bootstrap": "",
                "client_id": "stockalert-test",
                "linger_ms": 5,
                "compression": "lz4",
            },
            "consumer": {
                "bootstrap": "",
                "client_id": "stockalert-test",
                "session_timeout_ms": 10_000,
            },
            "admin_interval_s": 120.0,
            "relay_interval_s": 1.0,
        },
    }
    config.update(overrides)
    return config

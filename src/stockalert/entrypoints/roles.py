"""The registry of roles `stockalert serve ROLE` runs, each one process of the distributed
system: its module under `entrypoints/`, what it does and the variables it reads. The CLI's
`serve` choices and their `--help` come from here; nothing heavy is imported."""

from __future__ import annotations

import attrs

# The quotas (command-api, query-api, the embedded run read them all).
_LIMITS = (
    "STOCKALERT_GRPC_MAX_REQUEST_BYTES",
    "STOCKALERT_MAX_SUBSCRIPTIONS_PER_USER",
    "STOCKALERT_MAX_TICKERS",
    "STOCKALERT_LOGIN_DELAY_S",
)

# What each variable means, for `serve ROLE --help` (the README has the full table).
VARIABLES = {
    "STOCKALERT_DB_URL": "the database (sqlite:///PATH or mysql+pymysql://USER:PASS@HOST:PORT/DB;"
    " default sqlite:///stockalert.db)",
    "STOCKALERT_READ_DB_URL": "where queries read (a replica; default STOCKALERT_DB_URL)",
    "STOCKALERT_STATE_DIR": "the state folder (default ./.stockalert)",
    "STOCKALERT_AUTH_SECRET": "token signing key, at least 32 bytes, the same for command-api"
    " and query-api (required)",
    "STOCKALERT_GRPC_ADDR": "where CommandService listens (default 127.0.0.1:50051)",
    "STOCKALERT_QUERY_ADDR": "where QueryService listens (default 127.0.0.1:50052)",
    "STOCKALERT_GRPC_WORKERS": "threads serving gRPC calls (default 8)",
    "STOCKALERT_GRPC_MAX_REQUEST_BYTES": "largest gRPC request accepted; larger ones are"
    " RESOURCE_EXHAUSTED (default 65536)",
    "STOCKALERT_MAX_SUBSCRIPTIONS_PER_USER": "subscriptions one user may have, and so list in"
    " one registration (default 100)",
    "STOCKALERT_MAX_TICKERS": "distinct tickers the whole system may watch (each is fetched"
    " every cycle; default 5000)",
    "STOCKALERT_LOGIN_DELAY_S": "first wait after too many failed logins, doubling with each"
    " further one (default 1)",
    "STOCKALERT_METRICS_PORT": "PORT or HOST:PORT of /metrics, /healthz and /readyz (unset: none)",
    "STOCKALERT_LOG_FORMAT": "text (key=value lines, the default) or json (one object per line)",
    "STOCKALERT_PRICE_SOURCE": "yfinance, yfinance-chart or replay:PATH (required)",
    "STOCKALERT_COLLECT_INTERVAL": "seconds between collection cycles (default 180)",
    "STOCKALERT_STALE_AFTER_S": "a ticker without a new quote this long is STALE (default 3600)",
    "STOCKALERT_FETCH_TIMEOUT_S": "timeout of one request to the price source (default 10)",
    "STOCKALERT_BREAKER_FAILURES": "failed batches in a row that open the breaker (default 3)",
    "STOCKALERT_BREAKER_RECOVERY_S": "how long the breaker stays open (default 300)",
    "STOCKALERT_BREAKER_SLOW_S": "a batch slower than this counts as failed (default 30)",
    "STOCKALERT_SMTP_HOST": "SMTP server; unset: .eml files in STOCKALERT_OUTBOX_DIR",
    "STOCKALERT_SMTP_PORT": "SMTP port (default 587, 465 with TLS, 25 without STARTTLS)",
    "STOCKALERT_SMTP_STARTTLS": "STARTTLS (default true)",
    "STOCKALERT_SMTP_TLS": "implicit TLS (default false)",
    "STOCKALERT_SMTP_USER": "SMTP login, once per connection",
    "STOCKALERT_SMTP_PASSWORD": "SMTP password",
    "STOCKALERT_SMTP_TIMEOUT_S": "SMTP socket timeout (default 10)",
    "STOCKALERT_SMTP_PAUSE_S": "pause after the server was unreachable (default 30)",
    "STOCKALERT_SMTP_BUILD_PROCESSES": "processes building messages while sending (default 1)",
    "STOCKALERT_SMTP_CONNECTIONS": "connections sending side by side, each user's e-mails on"
    " one of them, in order (default 1)",
    "STOCKALERT_SMTP_FROM": "sender (default stockalert <alerts@stockalert.invalid>)",
    "STOCKALERT_OUTBOX_DIR": "where .eml files go without SMTP (default ./outbox)",
    "STOCKALERT_DELIVERY_INTERVAL": "seconds between looks for due PENDING e-mails (default 5)",
    "STOCKALERT_MAIL_RETRY_BASE_S": "first wait before a failed e-mail is retried (default 30)",
    "STOCKALERT_MAIL_RETRY_MAX_S": "longest wait between two attempts (default 900)",
    "STOCKALERT_QUOTE_RETENTION_S": "quotes older than this are removed... (default 7 days)",
    "STOCKALERT_KEEP_QUOTES": "...but always the newest N per followed ticker (default 20)",
    "STOCKALERT_REQUEST_TTL_S": "how long stored command replies are kept (default 86400)",
    "STOCKALERT_CLEAN_INTERVAL": "seconds between clean-ups (default 3600)",
    "STOCKALERT_KAFKA_BOOTSTRAP": "Kafka brokers HOST:PORT,...; set: the roles talk through"
    " Kafka (events written to the outbox, published by a relay); unset: nothing is published",
    "STOCKALERT_KAFKA_TOPIC_PREFIX": "prefix of every topic name (several deployments on one"
    " cluster; default none)",
    "STOCKALERT_KAFKA_PARTITIONS": "partitions of to-alert-system, to-notifier and the"
    " subscription changes (default 6)",
    "STOCKALERT_KAFKA_REPLICATION": "replication factor of every topic (default 3)",
    "STOCKALERT_KAFKA_MIN_INSYNC": "min.insync.replicas of every topic (default 2)",
    "STOCKALERT_KAFKA_LINGER_MS": "producer linger.ms (default 5)",
    "STOCKALERT_KAFKA_COMPRESSION": "producer compression: none, gzip, snappy, lz4, zstd"
    " (default lz4)",
    "STOCKALERT_KAFKA_ADMIN_INTERVAL": "seconds between two cluster health checks (default 120)",
    "STOCKALERT_OUTBOX_INTERVAL": "seconds between two looks of the outbox relay for rows it"
    " was not woken for (default 1)",
    "STOCKALERT_KAFKA_SESSION_TIMEOUT_MS": "a consumer group member silent this long is"
    " replaced, its partitions move (default 10000, at least 6000)",
}

_CORE = (
    "STOCKALERT_DB_URL",
    "STOCKALERT_STATE_DIR",
    "STOCKALERT_METRICS_PORT",
    "STOCKALERT_LOG_FORMAT",
)
_KAFKA = (
    "STOCKALERT_KAFKA_BOOTSTRAP",
    "STOCKALERT_KAFKA_TOPIC_PREFIX",
    "STOCKALERT_KAFKA_LINGER_MS",
    "STOCKALERT_KAFKA_COMPRESSION",
    "STOCKALERT_OUTBOX_INTERVAL",
)


@attrs.frozen
class Role:
    """One servable role."""

    name: str
    module: str  # stockalert.entrypoints.<module>: ROLE, CONTAINER, settings, plan
    summary: str
    variables: tuple[str, ...]

    def help_text(self) -> str:
        """The description of `serve ROLE --help`."""
        lines = [f"{self.summary}", "", "Environment:"]
        lines += [f"  {name}: {VARIABLES[name]}" for name in self.variables]
        lines += ["", "Exits 78 naming a missing or bad variable; exits 0 after SIGTERM."]
        return "\n".join(lines)


ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        Role(
            "command-api",
            "stockalert.entrypoints.command_api",
            "The command side (gRPC CommandService): register, log in, set and remove "
            "subscriptions, delete the account; every command at most once per request id. "
            "With Kafka, subscription changes go to the compacted subscription-changes topic.",
            (
                *_CORE,
                "STOCKALERT_AUTH_SECRET",
                "STOCKALERT_GRPC_ADDR",
                "STOCKALERT_GRPC_WORKERS",
                *_LIMITS,
                *_KAFKA,
            ),
        ),
        Role(
            "query-api",
            "stockalert.entrypoints.query_api",
            "The query side (gRPC QueryService): latest and average values, subscriptions, "
            "notification history; reads only, through STOCKALERT_READ_DB_URL.",
            (
                *_CORE,
                "STOCKALERT_READ_DB_URL",
                "STOCKALERT_AUTH_SECRET",
                "STOCKALERT_QUERY_ADDR",
                "STOCKALERT_GRPC_WORKERS",
                *_LIMITS,
            ),
        ),
        Role(
            "collector",
            "stockalert.entrypoints.collector",
            "Every STOCKALERT_COLLECT_INTERVAL seconds: fetch the tickers in use in one batch "
            "(behind the circuit breaker), store the new quotes, mark ticker statuses. With "
            "Kafka, one PriceUpdated per new quote goes to to-alert-system, key = ticker.",
            (
                *_CORE,
                "STOCKALERT_PRICE_SOURCE",
                "STOCKALERT_COLLECT_INTERVAL",
                "STOCKALERT_STALE_AFTER_S",
                "STOCKALERT_FETCH_TIMEOUT_S",
                "STOCKALERT_BREAKER_FAILURES",
                "STOCKALERT_BREAKER_RECOVERY_S",
                "STOCKALERT_BREAKER_SLOW_S",
                *_KAFKA,
            ),
        ),
        Role(
            "alert-system",
            "stockalert.entrypoints.alert_system",
            "A member of the alert-system group on to-alert-system: owns the tickers of its "
            "partitions (loads their subscriptions and alert states on assignment), follows "
            "the subscription changes, runs each quote through the incremental engine and "
            "writes the changed states, the high-water mark and one Notification per crossing "
            "(to to-notifier, key = user, through the outbox) in one transaction.",
            (*_CORE, *_KAFKA, "STOCKALERT_KAFKA_SESSION_TIMEOUT_MS"),
        ),
        Role(
            "notifier",
            "stockalert.entrypoints.notifier",
            "E-mails each notification once, each user's in order, with backoff while the mail "
            "server fails. With Kafka, a member of the notifier group on to-notifier that "
            "delivers to the users of its partitions; without, it delivers what the ledger "
            "holds PENDING.",
            (
                *_KAFKA,
                "STOCKALERT_KAFKA_SESSION_TIMEOUT_MS",
                *_CORE,
                "STOCKALERT_SMTP_HOST",
                "STOCKALERT_SMTP_PORT",
                "STOCKALERT_SMTP_STARTTLS",
                "STOCKALERT_SMTP_TLS",
                "STOCKALERT_SMTP_USER",
                "STOCKALERT_SMTP_PASSWORD",
                "STOCKALERT_SMTP_FROM",
                "STOCKALERT_SMTP_TIMEOUT_S",
                "STOCKALERT_SMTP_PAUSE_S",
                "STOCKALERT_SMTP_BUILD_PROCESSES",
                "STOCKALERT_SMTP_CONNECTIONS",
                "STOCKALERT_OUTBOX_DIR",
                "STOCKALERT_DELIVERY_INTERVAL",
                "STOCKALERT_MAIL_RETRY_BASE_S",
                "STOCKALERT_MAIL_RETRY_MAX_S",
            ),
        ),
        Role(
            "cleaner",
            "stockalert.entrypoints.cleaner",
            "Retention, every STOCKALERT_CLEAN_INTERVAL seconds: old quotes (keeping the newest "
            "per followed ticker), quotes of tickers nobody follows, expired command replies.",
            (
                *_CORE,
                "STOCKALERT_QUOTE_RETENTION_S",
                "STOCKALERT_KEEP_QUOTES",
                "STOCKALERT_REQUEST_TTL_S",
                "STOCKALERT_CLEAN_INTERVAL",
            ),
        ),
        Role(
            "kafka-admin",
            "stockalert.entrypoints.kafka_admin",
            "Creates the Kafka topics that are missing (RF and min.insync.replicas from the "
            "settings; an existing topic with other settings is reported), then logs the "
            "cluster's health every STOCKALERT_KAFKA_ADMIN_INTERVAL seconds.",
            (
                "STOCKALERT_KAFKA_BOOTSTRAP",
                "STOCKALERT_KAFKA_TOPIC_PREFIX",
                "STOCKALERT_METRICS_PORT",
                "STOCKALERT_LOG_FORMAT",
                "STOCKALERT_KAFKA_PARTITIONS",
                "STOCKALERT_KAFKA_REPLICATION",
                "STOCKALERT_KAFKA_MIN_INSYNC",
                "STOCKALERT_KAFKA_ADMIN_INTERVAL",
            ),
        ),
    )
}

"""Composition root: the dependency-injector containers that build stockalert from config."""

from __future__ import annotations

from collections.abc import Mapping

from dependency_injector import containers, providers

from stockalert import bootstrap
from stockalert.adapters import memory
from stockalert.adapters.passwords import Argon2Hasher
from stockalert.adapters.system import SystemClock, UuidIds
from stockalert.domain.alerting import AlertEngine

SUPPORTED_DB_URLS = ("memory://",)


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the variable."""


class Container(containers.DeclarativeContainer):
    """Everything the embedded system needs, over in-memory storage.

    Entry points fill `config` from the environment (`from_environ`); tests override single
    providers with fakes (`container.mailer.override(...)`).
    """

    config = providers.Configuration(strict=True)

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidIds)
    hasher = providers.Singleton(Argon2Hasher)

    store = providers.Singleton(memory.MemoryStore)
    uow = providers.Factory(memory.MemoryUnitOfWork, store=store)
    read_model = providers.Singleton(memory.MemoryReadModel, store=store)

    engine = providers.Singleton(AlertEngine)
    mailer = providers.Singleton(memory.MemoryMailer)

    bus = providers.Singleton(
        bootstrap.build_bus,
        uow_factory=uow.provider,
        read_model=read_model,
        engine=engine,
        mailer=mailer,
        ids=ids,
        hasher=hasher,
        clock=clock,
    )


def from_environ(environ: Mapping[str, str]) -> Container:
    """A container configured from STOCKALERT_* variables; bad values raise ConfigError."""
    db_url = environ.get("STOCKALERT_DB_URL", "memory://").strip()
    if db_url not in SUPPORTED_DB_URLS:
        raise ConfigError(
            f"STOCKALERT_DB_URL={db_url!r} is not supported by this build "
            f"(supported: {', '.join(SUPPORTED_DB_URLS)})"
        )
    container = Container()
    container.config.from_dict({"db_url": db_url})
    return container

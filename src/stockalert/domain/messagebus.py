"""The message bus: commands to their handler (at most once), events to theirs, queries read.

Handlers come in sets (`HandlerSet`), one per use case; a role's bus holds the sets that role
runs, the embedded run's bus holds them all. A failing event handler never stops the others,
but it is never silent either: the call that dispatched the event raises `HandlerFailed`
after every handler ran, so a consumer of an outside event (Kafka) can decline to commit.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from stockalert.domain.commands import Command, IdempotentCommand
from stockalert.domain.events import Event
from stockalert.domain.ports import NO_TELEMETRY, Clock, Telemetry, UnitOfWork
from stockalert.domain.queries import Query
from stockalert.domain.request_ledger import CommandHandler, run_once

log = logging.getLogger(__name__)

EventHandler = Callable[[Any, UnitOfWork], None]
QueryHandler = Callable[[Any], object]


@attrs.frozen
class HandlerSet:
    """The handlers of one use case, bound to their dependencies."""

    commands: Mapping[type[Command], CommandHandler] = attrs.field(factory=dict)
    events: Mapping[type[Event], Sequence[EventHandler]] = attrs.field(factory=dict)
    queries: Mapping[type[Query], QueryHandler] = attrs.field(factory=dict)


class HandlerFailed(Exception):
    """One or more event handlers raised; every other handler still ran.

    `failures` pairs each failed event with its error; `result` is what the command returned
    (None for `publish`), since the command itself was committed.
    """

    def __init__(self, failures: Sequence[tuple[Event, Exception]], result: object = None):
        names = ", ".join(sorted({type(event).__name__ for event, _ in failures}))
        super().__init__(f"{len(failures)} event handler(s) failed ({names})")
        self.failures = list(failures)
        self.result = result


class MessageBus:
    """Dispatches commands, events and queries to handlers bound to their dependencies.

    Events are handled one at a time (the alert engine is not thread-safe, and ordering per
    ticker matters); commands from several threads run concurrently, isolated by their unit
    of work.
    """

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        clock: Clock,
        handler_sets: Iterable[HandlerSet],
        telemetry: Telemetry = NO_TELEMETRY,
        secret_digest: Callable[[str], str] | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._secret_digest = secret_digest  # keys secrets into request fingerprints
        self._clock = clock
        self._telemetry = telemetry
        self._commands: dict[type[Command], CommandHandler] = {}
        self._events: dict[type[Event], list[EventHandler]] = {}
        self._queries: dict[type[Query], QueryHandler] = {}
        for handlers in handler_sets:
            _merge(self._commands, handlers.commands)
            _merge(self._queries, handlers.queries)
            for kind, each in handlers.events.items():
                self._events.setdefault(kind, []).extend(each)
        self._event_lock = threading.RLock()

    def handles(self, message_type: type[Command] | type[Query]) -> bool:
        """True when this bus has a handler for the command or query type."""
        return message_type in self._commands or message_type in self._queries

    def subscribe(self, event_type: type[Event], handler: EventHandler) -> None:
        """Add a handler for an event type (e.g. a publisher to other processes)."""
        self._events.setdefault(event_type, []).append(handler)

    def handle(self, command: Command) -> object:
        """Execute a command; its events are handled before this returns.

        Raises HandlerFailed (carrying the command's result) when an event handler failed.
        """
        handler = self._commands[type(command)]
        uow = self._uow_factory()
        if isinstance(command, IdempotentCommand):
            command.check_session(self._clock.now())  # never stored: see check_session
            result = run_once(
                command, handler, uow, self._clock, self._telemetry, self._secret_digest
            )
        else:
            result = handler(command, uow)
        failures = self._dispatch(uow.collect_events())
        if failures:
            raise HandlerFailed(failures, result)
        return result

    def ask(self, query: Query) -> object:
        """Answer a query; never changes state."""
        return self._queries[type(query)](query)

    def publish(self, event: Event) -> None:
        """Handle an event that came from outside (another role, via Kafka).

        Raises HandlerFailed when a handler of it (or of an event it led to) failed.
        """
        failures = self._dispatch([event])
        if failures:
            raise HandlerFailed(failures)

    def _dispatch(self, events: Iterable[Event]) -> list[tuple[Event, Exception]]:
        queue = deque(events)
        failures: list[tuple[Event, Exception]] = []
        if not queue:
            return failures
        with self._event_lock:
            while queue:
                event = queue.popleft()
                for handler in self._events.get(type(event), ()):
                    uow = self._uow_factory()
                    try:
                        handler(event, uow)
                    except Exception as err:
                        # One failing handler must not stop the others; the caller hears of it.
                        log.exception("event=handler_failed event_type=%s", type(event).__name__)
                        failures.append((event, err))
                    queue.extend(uow.collect_events())
        return failures


def _merge(into: dict[Any, Any], handlers: Mapping[Any, Any]) -> None:
    for kind, handler in handlers.items():
        if kind in into:
            raise ValueError(f"{kind.__name__} has two handlers")
        into[kind] = handler

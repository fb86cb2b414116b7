"""The message bus: commands to their handler (at most once), events to theirs, queries read."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from stockalert.domain.commands import Command, IdempotentCommand
from stockalert.domain.errors import DomainError, InvalidArgument, Unavailable
from stockalert.domain.events import Event
from stockalert.domain.model import parse_request_id
from stockalert.domain.ports import Clock, StoredReply, UnitOfWork
from stockalert.domain.queries import Query

log = logging.getLogger(__name__)

CommandHandler = Callable[[Any, UnitOfWork], object]
EventHandler = Callable[[Any, UnitOfWork], None]
QueryHandler = Callable[[Any], object]

# A claim can lose a race with a concurrent duplicate (SQL: duplicate key after waiting);
# the retry then finds the winner's reply.
_CLAIM_ATTEMPTS = 3


class ConcurrentDuplicate(Exception):
    """Raised by a request ledger when a concurrent transaction stored the same key first."""


def run_once(
    command: IdempotentCommand,
    handler: CommandHandler,
    uow: UnitOfWork,
    clock: Clock,
) -> object:
    """Execute `handler` at most once per request key; the reply is stored with the effect.

    Domain failures are stored too and replayed as the same error; the effect of a failed
    command is rolled back (nothing half-written) while its reply is kept. Infrastructure
    failures are not stored: the whole transaction rolls back and the client may retry.
    """
    parse_request_id(command.request_id)  # a request without an id is never stored
    key = command.ledger_key()
    fingerprint = command.fingerprint()
    for attempt in range(1, _CLAIM_ATTEMPTS + 1):
        try:
            with uow:
                stored = uow.requests.claim(key)
                if stored is not None:
                    if stored.fingerprint != fingerprint:
                        raise InvalidArgument(
                            "request_id",
                            f"{key.request_id!r} was already used for a different request",
                        )
                    log.info(
                        "event=request_replayed method=%s request_id=%s",
                        key.method,
                        key.request_id,
                    )
                    return stored.replay()
                try:
                    with uow.savepoint():
                        result = handler(command, uow)
                except Unavailable:
                    raise
                except DomainError as err:
                    reply = StoredReply(
                        fingerprint, err.code, err.message, err.field, None, clock.now()
                    )
                else:
                    reply = StoredReply(fingerprint, None, "", None, result, clock.now())
                uow.requests.complete(key, reply)
                uow.commit()
        except ConcurrentDuplicate:
            if attempt == _CLAIM_ATTEMPTS:
                raise Unavailable("request is being processed; retry") from None
            continue
        return reply.replay()
    raise AssertionError("unreachable")  # pragma: no cover


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
        commands: Mapping[type[Command], CommandHandler],
        events: Mapping[type[Event], Sequence[EventHandler]],
        queries: Mapping[type[Query], QueryHandler],
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._commands = dict(commands)
        self._events = {kind: list(handlers) for kind, handlers in events.items()}
        self._queries = dict(queries)
        self._event_lock = threading.RLock()

    def subscribe(self, event_type: type[Event], handler: EventHandler) -> None:
        """Add a handler for an event type (e.g. a publisher to other processes)."""
        self._events.setdefault(event_type, []).append(handler)

    def handle(self, command: Command) -> object:
        """Execute a command; its events are handled before this returns."""
        handler = self._commands[type(command)]
        uow = self._uow_factory()
        if isinstance(command, IdempotentCommand):
            result = run_once(command, handler, uow, self._clock)
        else:
            result = handler(command, uow)
        self._dispatch(uow.collect_events())
        return result

    def ask(self, query: Query) -> object:
        """Answer a query; never changes state."""
        return self._queries[type(query)](query)

    def publish(self, event: Event) -> None:
        """Handle an event that came from outside (another role, via Kafka)."""
        self._dispatch([event])

    def _dispatch(self, events: Iterable[Event]) -> None:
        queue = deque(events)
        if not queue:
            return
        with self._event_lock:
            while queue:
                event = queue.popleft()
                for handler in self._events.get(type(event), ()):
                    uow = self._uow_factory()
                    try:
                        handler(event, uow)
                    except Exception:
                        # One failing handler must not stop the others nor crash the role.
                        log.exception("event=handler_failed event_type=%s", type(event).__name__)
                    queue.extend(uow.collect_events())

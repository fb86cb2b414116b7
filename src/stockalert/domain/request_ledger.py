"""Where a duplicate command is caught: at-most-once execution through the request ledger.

Every idempotent command carries a client-chosen request id. Its reply is stored under
(method, user, request id) in the same transaction as its effect, failures included, so a
retry gets the stored reply and concurrent duplicates execute once (ADR 3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from stockalert.domain.commands import IdempotentCommand
from stockalert.domain.errors import DomainError, InvalidArgument, QuotaExceeded, Unavailable
from stockalert.domain.model import parse_request_id
from stockalert.domain.ports import NO_TELEMETRY, Clock, StoredReply, Telemetry, UnitOfWork

log = logging.getLogger(__name__)

CommandHandler = Callable[[Any, UnitOfWork], object]

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
    telemetry: Telemetry = NO_TELEMETRY,
    secret_digest: Callable[[str], str] | None = None,
) -> object:
    """Execute `handler` at most once per request key; the reply is stored with the effect.

    Domain failures are stored too and replayed as the same error; the effect of a failed
    command is rolled back (nothing half-written) while its reply is kept. Unavailable and
    QuotaExceeded are not stored: the same request may succeed once the service or the room
    is back. Infrastructure
    failures are not stored: the whole transaction rolls back and the client may retry.
    """
    parse_request_id(command.request_id)  # a request without an id is never stored
    key = command.ledger_key()
    fingerprint = command.fingerprint(secret_digest)
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
                    telemetry.request_replayed(key.method)
                    return stored.replay()
                try:
                    with uow.savepoint():
                        result = handler(command, uow)
                except (Unavailable, QuotaExceeded):
                    raise  # not stored: the same request may succeed later
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

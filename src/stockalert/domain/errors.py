"""Errors a user can cause, each with the status code the transports map it to."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Transport-neutral status codes; names match the gRPC codes they map to."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    NOT_FOUND = "NOT_FOUND"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"


class DomainError(Exception):
    """A failure caused by the request or the state it meets; safe to show to the user."""

    code: ErrorCode = ErrorCode.INVALID_ARGUMENT

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DomainError) and (self.code, self.message, self.field) == (
            other.code,
            other.message,
            other.field,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.message, self.field))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, field={self.field!r})"


class InvalidArgument(DomainError):
    """A field of the request is malformed or contradicts stored state; names the field."""

    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)

    @classmethod
    def restored(cls, message: str, field: str | None) -> InvalidArgument:
        """The error as stored in a reply: message already formatted."""
        err = cls.__new__(cls)
        DomainError.__init__(err, message, field=field)
        return err


class AlreadyExists(DomainError):
    """The thing the request would create exists already."""

    code = ErrorCode.ALREADY_EXISTS


class NotFound(DomainError):
    """The thing the request names does not exist (for this user)."""

    code = ErrorCode.NOT_FOUND


class Unauthenticated(DomainError):
    """The caller could not be identified."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""

    code = ErrorCode.PERMISSION_DENIED


class QuotaExceeded(DomainError):
    """A limit (subscriptions per user, tickers in the system, login attempts) would be
    passed; names the field and the limit. Never stored in the request ledger: the same
    request may succeed once there is room."""

    code = ErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)


class Unavailable(DomainError):
    """A dependency is down; the same request may succeed later. Never stored in the ledger."""

    code = ErrorCode.UNAVAILABLE


_BY_CODE: dict[ErrorCode, type[DomainError]] = {
    cls.code: cls
    for cls in (AlreadyExists, NotFound, Unauthenticated, PermissionDenied, Unavailable)
}


def error_from_reply(code: ErrorCode, message: str, field: str | None) -> DomainError:
    """Rebuild the error a stored reply describes, so a replay raises what the original did."""
    if code is ErrorCode.INVALID_ARGUMENT:
        return InvalidArgument.restored(message, field)
    return _BY_CODE[code](message, field=field)

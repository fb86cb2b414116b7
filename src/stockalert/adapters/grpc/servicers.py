"""Thin servicers: proto in, command or query out, domain errors to gRPC status codes."""

from __future__ import annotations

import functools
import logging
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import attrs
import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from stockalert.api.v1 import stockalert_pb2 as pb
from stockalert.api.v1 import stockalert_pb2_grpc as pb_grpc
from stockalert.domain.commands import (
    DeleteUser,
    LoginUser,
    LogoutUser,
    RegisterUser,
    RemoveSubscription,
    SetSubscription,
    SubscriptionSpec,
)
from stockalert.domain.errors import DomainError, ErrorCode, NotFound, Unauthenticated
from stockalert.domain.messagebus import MessageBus
from stockalert.domain.model import NotificationRecord
from stockalert.domain.queries import (
    Authenticate,
    GetAverageValue,
    GetLatestValue,
    ListNotifications,
    ListSubscriptions,
)
from stockalert.domain.views import (
    AverageValue,
    LatestValue,
    LoggedIn,
    Principal,
    SubscriptionView,
    UserRegistered,
)

log = logging.getLogger(__name__)

STATUS = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
MAX_DETAILS = 1000
ACCOUNT_GONE = "the account of this token no longer exists"

F = TypeVar("F", bound=Callable[..., Any])


@attrs.frozen
class Undecodable:
    """A request frame that is not a message of its method's type (the server's tolerant
    deserializer hands this to the servicer instead of failing the call as INTERNAL)."""

    message: str  # the type it should have been
    size: int
    error: str


def rpc(method: F) -> F:
    """Run an RPC body; map domain errors to their status, anything else to INTERNAL. An
    undecodable request is INVALID_ARGUMENT before anything else (no token needed to be
    told; one WARNING line, no traceback)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            log.warning(
                "event=rpc_undecodable method=%s bytes=%d error=%s peer=%s",
                method.__name__,
                request.size,
                request.error,
                context.peer(),
            )
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request: not a valid {request.message} message ({request.size} bytes)",
            )
        try:
            return method(self, request, context)
        except DomainError as err:
            if isinstance(err, NotFound) and err.field == "user_id":
                # The only user id an RPC names is its token's (see _Authenticated).
                err = Unauthenticated(ACCOUNT_GONE)
            # Status details travel in a header: keep them well under gRPC's 16 KiB limit.
            context.abort(STATUS[err.code], err.message[:MAX_DETAILS])
        except Exception:
            # A bug, not the caller's fault: log it with its traceback, say nothing inside.
            log.exception("event=rpc_failed method=%s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, "internal error")

    return cast("F", wrapper)


def peer_host(peer: str) -> str:
    """The client's address without its port: "ipv4:10.0.0.7:5123" -> "10.0.0.7",
    "ipv6:[::1]:5123" (or "ipv6:%5B::1%5D:5123") -> "::1" (behind a proxy: the proxy's)."""
    kind, _, rest = peer.partition(":")
    rest = urllib.parse.unquote(rest)
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or rest
    return peer[:100]


def bearer_token(context: grpc.ServicerContext) -> str:
    """The token of `authorization: Bearer <token>` metadata."""
    values = [v for k, v in context.invocation_metadata() if k == "authorization"]
    if not values:
        raise Unauthenticated("missing authorization metadata (authorization: Bearer <token>)")
    value = values[0]
    text = value.decode() if isinstance(value, bytes) else value
    scheme, _, token = text.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    return token.strip()


def _optional(message: Any, field: str) -> float | None:
    return getattr(message, field) if message.HasField(field) else None


def timestamp(value: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime."""
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def subscription_message(view: SubscriptionView) -> pb.Subscription:
    """Domain view -> proto (a side without threshold has SIDE_STATUS_UNSPECIFIED)."""
    return pb.Subscription(
        subscription_id=view.subscription_id,
        ticker=view.ticker,
        high_value=view.high_value,
        low_value=view.low_value,
        rearm_percent=view.rearm_percent,
        cooldown_s=view.cooldown_s,
        remind_every_s=view.remind_every_s,
        high_status=None if view.high_status is None else f"SIDE_STATUS_{view.high_status}",
        low_status=None if view.low_status is None else f"SIDE_STATUS_{view.low_status}",
        ticker_status=f"TICKER_STATUS_{view.ticker_status}",
    )


def notification_message(record: NotificationRecord) -> pb.Notification:
    """Ledger record -> proto."""
    note = record.notification
    message = pb.Notification(
        notification_id=note.notification_id,
        ticker=note.ticker.value,
        side=f"SIDE_{note.side}",
        kind=f"NOTIFICATION_KIND_{note.kind}",
        price=note.price,
        threshold=note.threshold,
        quoted_at=timestamp(note.quoted_at),
        status=f"DELIVERY_STATUS_{record.status}",
        attempts=record.attempts,
        last_error=record.last_error or "",
        correlation_id=note.correlation_id or "",
    )
    if record.sent_at is not None:
        message.sent_at.CopyFrom(timestamp(record.sent_at))
    if record.next_attempt_at is not None:
        message.next_attempt_at.CopyFrom(timestamp(record.next_attempt_at))
    return message


class _Authenticated:
    """The caller of an RPC, from its bearer token: verified, and its session version
    checked against the user's (a logged-out session, a deleted account: UNAUTHENTICATED)."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus

    def principal(self, context: grpc.ServicerContext) -> Principal:
        answer = self._bus.ask(Authenticate(bearer_token(context)))
        assert isinstance(answer, Principal)
        return answer


class CommandServicer(pb_grpc.CommandServiceServicer, _Authenticated):
    """stockalert.v1.CommandService over the message bus."""

    @rpc
    def RegisterUser(
        self, request: pb.RegisterUserRequest, context: grpc.ServicerContext
    ) -> pb.RegisterUserReply:
        specs = tuple(
            SubscriptionSpec(
                ticker=spec.ticker,
                high_value=_optional(spec, "high_value"),
                low_value=_optional(spec, "low_value"),
                rearm_percent=_optional(spec, "rearm_percent"),
            )
            for spec in request.subscriptions
        )
        reply = self._bus.handle(
            RegisterUser(request.request_id, request.email, request.password, specs)
        )
        assert isinstance(reply, UserRegistered)
        return pb.RegisterUserReply(user_id=reply.user_id)

    @rpc
    def LoginUser(
        self, request: pb.LoginUserRequest, context: grpc.ServicerContext
    ) -> pb.LoginUserReply:
        reply = self._bus.handle(
            LoginUser(request.email, request.password, peer_host(context.peer()))
        )
        assert isinstance(reply, LoggedIn)
        return pb.LoginUserReply(token=reply.token, expires_at=timestamp(reply.expires_at))

    @rpc
    def LogoutUser(
        self, request: pb.LogoutUserRequest, context: grpc.ServicerContext
    ) -> pb.LogoutUserReply:
        user = self.principal(context)
        self._bus.handle(LogoutUser(user.user_id))
        return pb.LogoutUserReply()

    @rpc
    def SetSubscription(
        self, request: pb.SetSubscriptionRequest, context: grpc.ServicerContext
    ) -> pb.SubscriptionReply:
        user = self.principal(context)
        reply = self._bus.handle(
            SetSubscription(
                request_id=request.request_id,
                user_id=user.user_id,
                ticker=request.ticker,
                high_value=_optional(request, "high_value"),
                low_value=_optional(request, "low_value"),
                rearm_percent=_optional(request, "rearm_percent"),
                cooldown_s=_optional(request, "cooldown_s"),
                remind_every_s=_optional(request, "remind_every_s"),
                clear_high_value=request.clear_high_value,
                clear_low_value=request.clear_low_value,
            )
        )
        assert isinstance(reply, SubscriptionView)
        return pb.SubscriptionReply(subscription=subscription_message(reply))

    @rpc
    def RemoveSubscription(
        self, request: pb.RemoveSubscriptionRequest, context: grpc.ServicerContext
    ) -> pb.RemoveSubscriptionReply:
        user = self.principal(context)
        self._bus.handle(RemoveSubscription(request.request_id, user.user_id, request.ticker))
        return pb.RemoveSubscriptionReply()

    @rpc
    def DeleteUser(
        self, request: pb.DeleteUserRequest, context: grpc.ServicerContext
    ) -> pb.DeleteUserReply:
        user = self.principal(context)
        self._bus.handle(DeleteUser(request.request_id, user.user_id, user.authenticated_at))
        return pb.DeleteUserReply()


class QueryServicer(pb_grpc.QueryServiceServicer, _Authenticated):
    """stockalert.v1.QueryService: reads only, through `bus.ask`."""

    @rpc
    def GetLatestValue(
        self, request: pb.GetLatestValueRequest, context: grpc.ServicerContext
    ) -> pb.GetLatestValueReply:
        user = self.principal(context)
        reply = self._bus.ask(GetLatestValue(user.user_id, request.ticker))
        assert isinstance(reply, LatestValue)
        return pb.GetLatestValueReply(
            ticker=reply.ticker, value=reply.value, quoted_at=timestamp(reply.quoted_at)
        )

    @rpc
    def GetAverageValue(
        self, request: pb.GetAverageValueRequest, context: grpc.ServicerContext
    ) -> pb.GetAverageValueReply:
        user = self.principal(context)
        reply = self._bus.ask(GetAverageValue(user.user_id, request.count, request.ticker))
        assert isinstance(reply, AverageValue)
        return pb.GetAverageValueReply(
            ticker=reply.ticker, average_value=reply.average_value, samples=reply.samples
        )

    @rpc
    def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: grpc.ServicerContext
    ) -> pb.ListSubscriptionsReply:
        user = self.principal(context)
        views = self._bus.ask(ListSubscriptions(user.user_id))
        assert isinstance(views, list)
        return pb.ListSubscriptionsReply(subscriptions=[subscription_message(v) for v in views])

    @rpc
    def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: grpc.ServicerContext
    ) -> pb.ListNotificationsReply:
        user = self.principal(context)
        records = self._bus.ask(ListNotifications(user.user_id, request.limit))
        assert isinstance(records, list)
        return pb.ListNotificationsReply(notifications=[notification_message(r) for r in records])

"""A typed client of the stockalert.v1 API that retries safely.

Every command gets one request id per call; a retry (UNAVAILABLE, DEADLINE_EXCEEDED) sends
the very same request, so the server's request ledger makes it execute at most once.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self, cast

import grpc

from stockalert.api.v1 import stockalert_pb2 as pb
from stockalert.api.v1 import stockalert_pb2_grpc as pb_grpc

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class ApiError(Exception):
    """A call failed with a gRPC status (after retries, if retryable)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def new_request_id() -> str:
    """A fresh idempotency key."""
    return uuid.uuid4().hex


class StockAlertClient:
    """CommandService and QueryService stubs with bearer auth and retries."""

    def __init__(
        self,
        address: str,
        query_address: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = 10.0,
        attempts: int = 5,
        backoff_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._channel = grpc.insecure_channel(address)
        self._query_channel = (
            self._channel
            if query_address in (None, address)
            else grpc.insecure_channel(query_address)
        )
        self._commands = pb_grpc.CommandServiceStub(self._channel)
        self._queries = pb_grpc.QueryServiceStub(self._query_channel)
        self.token = token
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._sleep = sleep

    def close(self) -> None:
        """Close the channels."""
        self._channel.close()
        if self._query_channel is not self._channel:
            self._query_channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: Any, request: Any, *, auth: bool = True) -> Any:
        metadata = None
        if auth:
            if not self.token:
                raise ApiError(grpc.StatusCode.UNAUTHENTICATED, "not logged in")
            metadata = [("authorization", f"Bearer {self.token}")]
        for attempt in range(1, self._attempts + 1):
            try:
                return method(request, timeout=self._timeout_s, metadata=metadata)
            except grpc.RpcError as err:
                code = err.code()
                if code in RETRYABLE and attempt < self._attempts:
                    delay = self._backoff_s * 2 ** (attempt - 1)
                    self._sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter
                    continue
                raise ApiError(code, err.details() or code.name) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # ----- commands ------------------------------------------------------------------------

    def register(
        self,
        email: str,
        password: str,
        subscriptions: Iterable[pb.SubscriptionSpec] = (),
        request_id: str | None = None,
    ) -> pb.RegisterUserReply:
        request = pb.RegisterUserRequest(
            request_id=request_id or new_request_id(),
            email=email,
            password=password,
            subscriptions=list(subscriptions),
        )
        return cast(
            "pb.RegisterUserReply", self._call(self._commands.RegisterUser, request, auth=False)
        )

    def login(self, email: str, password: str) -> pb.LoginUserReply:
        request = pb.LoginUserRequest(email=email, password=password)
        reply: pb.LoginUserReply = self._call(self._commands.LoginUser, request, auth=False)
        self.token = reply.token
        return reply

    def logout(self) -> pb.LogoutUserReply:
        """End every session of this client's user (all their tokens, everywhere)."""
        reply = self._call(self._commands.LogoutUser, pb.LogoutUserRequest())
        self.token = None
        return cast("pb.LogoutUserReply", reply)

    def set_subscription(
        self, ticker: str, request_id: str | None = None, **fields: Any
    ) -> pb.SubscriptionReply:
        request = pb.SetSubscriptionRequest(
            request_id=request_id or new_request_id(), ticker=ticker, **fields
        )
        return cast("pb.SubscriptionReply", self._call(self._commands.SetSubscription, request))

    def remove_subscription(
        self, ticker: str, request_id: str | None = None
    ) -> pb.RemoveSubscriptionReply:
        request = pb.RemoveSubscriptionRequest(
            request_id=request_id or new_request_id(), ticker=ticker
        )
        return cast(
            "pb.RemoveSubscriptionReply", self._call(self._commands.RemoveSubscription, request)
        )

    def delete_user(self, request_id: str | None = None) -> pb.DeleteUserReply:
        request = pb.DeleteUserRequest(request_id=request_id or new_request_id())
        return cast("pb.DeleteUserReply", self._call(self._commands.DeleteUser, request))

    # ----- queries -------------------------------------------------------------------------

    def latest(self, ticker: str = "") -> pb.GetLatestValueReply:
        request = pb.GetLatestValueRequest(ticker=ticker)
        return cast("pb.GetLatestValueReply", self._call(self._queries.GetLatestValue, request))

    def average(self, count: int, ticker: str = "") -> pb.GetAverageValueReply:
        request = pb.GetAverageValueRequest(ticker=ticker, count=count)
        return cast("pb.GetAverageValueReply", self._call(self._queries.GetAverageValue, request))

    def subscriptions(self) -> pb.ListSubscriptionsReply:
        request = pb.ListSubscriptionsRequest()
        return cast(
            "pb.ListSubscriptionsReply", self._call(self._queries.ListSubscriptions, request)
        )

    def notifications(self, limit: int = 0) -> pb.ListNotificationsReply:
        request = pb.ListNotificationsRequest(limit=limit)
        return cast(
            "pb.ListNotificationsReply", self._call(self._queries.ListNotifications, request)
        )

import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SideStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_STATUS_UNSPECIFIED: _ClassVar[SideStatus]
    SIDE_STATUS_ARMED: _ClassVar[SideStatus]
    SIDE_STATUS_FIRED: _ClassVar[SideStatus]

class TickerStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TICKER_STATUS_UNSPECIFIED: _ClassVar[TickerStatus]
    TICKER_STATUS_PENDING: _ClassVar[TickerStatus]
    TICKER_STATUS_ACTIVE: _ClassVar[TickerStatus]
    TICKER_STATUS_UNKNOWN: _ClassVar[TickerStatus]
    TICKER_STATUS_STALE: _ClassVar[TickerStatus]

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_HIGH: _ClassVar[Side]
    SIDE_LOW: _ClassVar[Side]

class NotificationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFICATION_KIND_UNSPECIFIED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_CROSSING: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_REMINDER: _ClassVar[NotificationKind]

class DeliveryStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATUS_UNSPECIFIED: _ClassVar[DeliveryStatus]
    DELIVERY_STATUS_PENDING: _ClassVar[DeliveryStatus]
    DELIVERY_STATUS_SENT: _ClassVar[DeliveryStatus]
    DELIVERY_STATUS_FAILED: _ClassVar[DeliveryStatus]
SIDE_STATUS_UNSPECIFIED: SideStatus
SIDE_STATUS_ARMED: SideStatus
SIDE_STATUS_FIRED: SideStatus
TICKER_STATUS_UNSPECIFIED: TickerStatus
TICKER_STATUS_PENDING: TickerStatus
TICKER_STATUS_ACTIVE: TickerStatus
TICKER_STATUS_UNKNOWN: TickerStatus
TICKER_STATUS_STALE: TickerStatus
SIDE_UNSPECIFIED: Side
SIDE_HIGH: Side
SIDE_LOW: Side
NOTIFICATION_KIND_UNSPECIFIED: NotificationKind
NOTIFICATION_KIND_CROSSING: NotificationKind
NOTIFICATION_KIND_REMINDER: NotificationKind
DELIVERY_STATUS_UNSPECIFIED: DeliveryStatus
DELIVERY_STATUS_PENDING: DeliveryStatus
DELIVERY_STATUS_SENT: DeliveryStatus
DELIVERY_STATUS_FAILED: DeliveryStatus

class SubscriptionSpec(_message.Message):
    __slots__ = ("ticker", "high_value", "low_value", "rearm_percent")
    TICKER_FIELD_NUMBER: _ClassVar[int]
    HIGH_VALUE_FIELD_NUMBER: _ClassVar[int]
    LOW_VALUE_FIELD_NUMBER: _ClassVar[int]
    REARM_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ticker: str
    high_value: float
    low_value: float
    rearm_percent: float
    def __init__(self, ticker: _Optional[str] = ..., high_value: _Optional[float] = ..., low_value: _Optional[float] = ..., rearm_percent: _Optional[float] = ...) -> None: ...

class RegisterUserRequest(_message.Message):
    __slots__ = ("request_id", "email", "password", "subscriptions")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    email: str
    password: str
    subscriptions: _containers.RepeatedCompositeFieldContainer[SubscriptionSpec]
    def __init__(self, request_id: _Optional[str] = ..., email: _Optional[str] = ..., password: _Optional[str] = ..., subscriptions: _Optional[_Iterable[_Union[SubscriptionSpec, _Mapping]]] = ...) -> None: ...

class RegisterUserReply(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class LoginUserRequest(_message.Message):
    __slots__ = ("email", "password")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    email: str
    password: str
    def __init__(self, email: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class LoginUserReply(_message.Message):
    __slots__ = ("token", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LogoutUserRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogoutUserReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetSubscriptionRequest(_message.Message):
    __slots__ = ("request_id", "ticker", "high_value", "low_value", "rearm_percent", "cooldown_s", "remind_every_s", "clear_high_value", "clear_low_value")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TICKER_FIELD_NUMBER: _ClassVar[int]
    HIGH_VALUE_FIELD_NUMBER: _ClassVar[int]
    LOW_VALUE_FIELD_NUMBER: _ClassVar[int]
    REARM_PERCENT_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_S_FIELD_NUMBER: _ClassVar[int]
    REMIND_EVERY_S_FIELD_NUMBER: _ClassVar[int]
    CLEAR_HIGH_VALUE_FIELD_NUMBER: _ClassVar[int]
    CLEAR_LOW_VALUE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    ticker: str
    high_value: float
    low_value: float
    rearm_percent: float
    cooldown_s: float
    remind_every_s: float
    clear_high_value: bool
    clear_low_value: bool
    def __init__(self, request_id: _Optional[str] = ..., ticker: _Optional[str] = ..., high_value: _Optional[float] = ..., low_value: _Optional[float] = ..., rearm_percent: _Optional[float] = ..., cooldown_s: _Optional[float] = ..., remind_every_s: _Optional[float] = ..., clear_high_value: _Optional[bool] = ..., clear_low_value: _Optional[bool] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ("subscription_id", "ticker", "high_value", "low_value", "rearm_percent", "cooldown_s", "remind_every_s", "high_status", "low_status", "ticker_status")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TICKER_FIELD_NUMBER: _ClassVar[int]
    HIGH_VALUE_FIELD_NUMBER: _ClassVar[int]
    LOW_VALUE_FIELD_NUMBER: _ClassVar[int]
    REARM_PERCENT_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_S_FIELD_NUMBER: _ClassVar[int]
    REMIND_EVERY_S_FIELD_NUMBER: _ClassVar[int]
    HIGH_STATUS_FIELD_NUMBER: _ClassVar[int]
    LOW_STATUS_FIELD_NUMBER: _ClassVar[int]
    TICKER_STATUS_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    ticker: str
    high_value: float
    low_value: float
    rearm_percent: float
    cooldown_s: float
    remind_every_s: float
    high_status: SideStatus
    low_status: SideStatus
    ticker_status: TickerStatus
    def __init__(self, subscription_id: _Optional[str] = ..., ticker: _Optional[str] = ..., high_value: _Optional[float] = ..., low_value: _Optional[float] = ..., rearm_percent: _Optional[float] = ..., cooldown_s: _Optional[float] = ..., remind_every_s: _Optional[float] = ..., high_status: _Optional[_Union[SideStatus, str]] = ..., low_status: _Optional[_Union[SideStatus, str]] = ..., ticker_status: _Optional[_Union[TickerStatus, str]] = ...) -> None: ...

class SubscriptionReply(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: Subscription
    def __init__(self, subscription: _Optional[_Union[Subscription, _Mapping]] = ...) -> None: ...

class RemoveSubscriptionRequest(_message.Message):
    __slots__ = ("request_id", "ticker")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TICKER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    ticker: str
    def __init__(self, request_id: _Optional[str] = ..., ticker: _Optional[str] = ...) -> None: ...

class RemoveSubscriptionReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteUserRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class DeleteUserReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetLatestValueRequest(_message.Message):
    __slots__ = ("ticker",)
    TICKER_FIELD_NUMBER: _ClassVar[int]
    ticker: str
    def __init__(self, ticker: _Optional[str] = ...) -> None: ...

class GetLatestValueReply(_message.Message):
    __slots__ = ("ticker", "value", "quoted_at")
    TICKER_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    QUOTED_AT_FIELD_NUMBER: _ClassVar[int]
    ticker: str
    value: float
    quoted_at: _timestamp_pb2.Timestamp
    def __init__(self, ticker: _Optional[str] = ..., value: _Optional[float] = ..., quoted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetAverageValueRequest(_message.Message):
    __slots__ = ("ticker", "count")
    TICKER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ticker: str
    count: int
    def __init__(self, ticker: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class GetAverageValueReply(_message.Message):
    __slots__ = ("ticker", "average_value", "samples")
    TICKER_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_VALUE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ticker: str
    average_value: float
    samples: int
    def __init__(self, ticker: _Optional[str] = ..., average_value: _Optional[float] = ..., samples: _Optional[int] = ...) -> None: ...

class ListSubscriptionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSubscriptionsReply(_message.Message):
    __slots__ = ("subscriptions",)
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ...) -> None: ...

class ListNotificationsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("notification_id", "ticker", "side", "kind", "price", "threshold", "quoted_at", "status", "attempts", "last_error", "sent_at", "next_attempt_at", "correlation_id")
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    TICKER_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    QUOTED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    ticker: str
    side: Side
    kind: NotificationKind
    price: float
    threshold: float
    quoted_at: _timestamp_pb2.Timestamp
    status: DeliveryStatus
    attempts: int
    last_error: str
    sent_at: _timestamp_pb2.Timestamp
    next_attempt_at: _timestamp_pb2.Timestamp
    correlation_id: str
    def __init__(self, notification_id: _Optional[str] = ..., ticker: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., kind: _Optional[_Union[NotificationKind, str]] = ..., price: _Optional[float] = ..., threshold: _Optional[float] = ..., quoted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[DeliveryStatus, str]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class ListNotificationsReply(_message.Message):
    __slots__ = ("notifications",)
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[Notification]
    def __init__(self, notifications: _Optional[_Iterable[_Union[Notification, _Mapping]]] = ...) -> None: ...

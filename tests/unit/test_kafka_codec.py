"""Events as Kafka messages: every published event type round-trips; anything else is a
CodecError that says what is wrong (the consumer sends it to the dead-letter topic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import attrs
import pytest

from stockalert.adapters.kafka.codec import PUBLISHED, CodecError, decode, encode
from stockalert.adapters.kafka.topics import Topics
from stockalert.domain.events import (
    AlertRaised,
    Event,
    PriceUpdated,
    SubscriptionRemoved,
    SubscriptionSet,
    UserDeleted,
)
from stockalert.domain.model import (
    ARMED,
    Email,
    Notification,
    NotificationKind,
    Quote,
    Side,
    SideState,
    SideStatus,
    Subscription,
    Ticker,
)

AT = datetime(2026, 1, 5, 14, 48, 0, 123456, tzinfo=UTC)
TOPICS = Topics(prefix="t.")
SUB = Subscription("sub1", "u1", Email("ann@example.com"), Ticker("BRK-B"), 500.0, None, 2.5, 60.0)
FIRED = SideState(SideStatus.FIRED, 3, 1767624480.5, 1, 1767624540.5)
NOTE = Notification(
    "sub1:HIGH:3", "sub1", "u1", Email("ann@example.com"), Ticker("BRK-B"), Side.HIGH,
    NotificationKind.REMINDER, 501.25, 500.0, AT, 3,
)  # fmt: skip

EVENTS: list[tuple[Event, str, bytes]] = [
    (PriceUpdated(Quote(Ticker("^GSPC"), 5021.5, AT)), "t.to-alert-system", b"^GSPC"),
    (SubscriptionSet(SUB, FIRED, ARMED), "t.stockalert.subscription-changes", b"sub1"),
    (SubscriptionRemoved("sub1", Ticker("BRK-B")), "t.stockalert.subscription-changes", b"sub1"),
    (UserDeleted("u1"), "t.stockalert.subscription-changes", b"user:u1"),
    (AlertRaised(NOTE), "t.to-notifier", b"u1"),
]


@pytest.mark.parametrize(("event", "topic", "key"), EVENTS, ids=lambda v: type(v).__name__)
def test_every_published_event_goes_to_its_topic_with_its_key_and_comes_back_equal(
    event: Event, topic: str, key: bytes
) -> None:
    """Encode then decode gives the same event; topic and key are those of the contract."""
    message = encode(event, TOPICS)
    assert message is not None
    assert (message.topic, message.key) == (topic, key)
    body = json.loads(message.value)
    assert body["version"] == 1
    assert decode(message.value) == event


def test_the_published_events_are_exactly_those_with_a_message() -> None:
    """PUBLISHED (what wakes the outbox relay) is the list of event types encode handles."""
    assert {type(event) for event, _, _ in EVENTS} == set(PUBLISHED)


def test_an_event_no_other_process_needs_is_not_encoded() -> None:
    """Only the contract's events leave the process."""

    class Private(Event):
        pass

    assert encode(Private(), TOPICS) is None


def _price(**fields: object) -> bytes:
    body = {"type": "PriceUpdated", "version": 1, "ticker": "AAPL", "price": 1.5}
    body["quoted_at"] = "2026-01-05T14:48:00Z"
    body.update(fields)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty message"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"version": 1}', "type: missing"),
        (b'{"type": "Surprise", "version": 1}', "type: unknown event type 'Surprise'"),
        (_price(version=2), "version: PriceUpdated version 2 is not known (known: [1])"),
        (_price(version="1"), "version: expected a whole number"),
        (_price(price="1.5"), "price: expected a finite number"),
        (_price(price=-3), "price: must be greater than 0"),
        (_price(ticker="not a ticker"), "ticker: 'not a ticker' is not a ticker symbol"),
        (_price(quoted_at="yesterday"), "quoted_at: 'yesterday' is not an ISO-8601 time"),
        (_price(quoted_at="2026-01-05T14:48:00"), "quoted_at: '2026-01-05T14:48:00' has no UTC"),
        (b"x" * 70_000, "more than 65536"),
    ],
)
def test_a_message_that_is_not_a_known_event_says_what_is_wrong(
    value: bytes | None, reason: str
) -> None:
    """Every way a payload can be wrong is a CodecError naming the field or the problem."""
    with pytest.raises(CodecError) as excinfo:
        decode(value)
    assert reason in str(excinfo.value)


def test_a_nested_field_is_named_with_its_path() -> None:
    """A wrong field inside a subscription change names its place."""
    message = encode(SubscriptionSet(SUB, FIRED, ARMED), TOPICS)
    assert message is not None
    body = json.loads(message.value)
    body["high"]["status"] = "SLEEPING"
    with pytest.raises(CodecError, match=r"high\.status: unknown value 'SLEEPING'"):
        decode(json.dumps(body).encode())


def _correlation_id(event: Event) -> str | None:
    if isinstance(event, PriceUpdated):
        return event.quote.correlation_id
    assert isinstance(event, AlertRaised)
    return event.notification.correlation_id


def test_the_correlation_id_travels_in_price_updated_and_notification() -> None:
    """The quote's correlation id is in the PriceUpdated and the Notification messages and
    comes back out of them (it is not part of equality, so it is checked by itself)."""
    quote = Quote(Ticker("AAPL"), 191.3, AT, correlation_id="9f2c41d07a8b4e35b1f0c2d6e8a7b3e1")
    note = attrs.evolve(NOTE, correlation_id="9f2c41d07a8b4e35b1f0c2d6e8a7b3e1")
    for event in (PriceUpdated(quote), AlertRaised(note)):
        message = encode(event, TOPICS)
        assert message is not None
        assert json.loads(message.value)["correlation_id"] == "9f2c41d07a8b4e35b1f0c2d6e8a7b3e1"
        back = decode(message.value)
        assert _correlation_id(back) == "9f2c41d07a8b4e35b1f0c2d6e8a7b3e1"


@pytest.mark.parametrize("event", [PriceUpdated(Quote(Ticker("AAPL"), 1.5, AT)), AlertRaised(NOTE)])
def test_a_message_of_the_previous_release_without_a_correlation_id_still_reads(
    event: Event,
) -> None:
    """The field was added to version 1 (optional): a message without it decodes, with None;
    the previous release's strict decoder ignores a field it does not know."""
    message = encode(event, TOPICS)
    assert message is not None
    body = json.loads(message.value)
    del body["correlation_id"]
    back = decode(json.dumps(body).encode())
    assert back == event
    assert _correlation_id(back) is None


@pytest.mark.parametrize(
    "bad", ["", "has space", "line\nbreak", "dot.ted", "x" * 65, 42, ["a"]], ids=repr
)
def test_a_correlation_id_that_could_not_go_into_a_log_line_or_header_is_refused(
    bad: object,
) -> None:
    """It goes into log lines, an e-mail header and the Message-ID: only [A-Za-z0-9_-]{1,64}."""
    with pytest.raises(CodecError, match="correlation_id") as excinfo:
        decode(_price(correlation_id=bad))
    assert excinfo.value.kind == "invalid_field"

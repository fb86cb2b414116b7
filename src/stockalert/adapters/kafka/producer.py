"""The producer: idempotent, acks=all, every delivery report checked.

`send` produces a batch and waits for every delivery report: it returns where each message
landed (topic, partition, offset) or raises DeliveryFailed — a message the brokers did not
acknowledge is an error its caller sees, never a silent drop. Idempotence (with acks=all)
means the producer's own retries never duplicate nor reorder a partition's messages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from stockalert.adapters.kafka import CLIENT_LOG
from stockalert.adapters.outbox import OutboxMessage

log = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]


class DeliveryFailed(Exception):
    """Messages were not acknowledged by the brokers in time (or were refused)."""


@attrs.frozen
class Delivered:
    """Where a message landed."""

    topic: str
    partition: int
    offset: int


@attrs.frozen
class ProducerSettings:
    """STOCKALERT_KAFKA_* settings of a producer."""

    bootstrap: str
    client_id: str = "stockalert"
    linger_ms: int = 5  # a few ms of batching: a collection cycle's quotes go in few requests
    compression: str = "lz4"  # cheap on CPU, and JSON events compress well
    # Bounds how long `send` may wait for the acknowledgements of a batch (a broker down: the
    # others take over within seconds; the whole cluster down: the caller retries later).
    delivery_timeout_ms: int = 15_000


def producer_config(settings: ProducerSettings) -> dict[str, Any]:
    """librdkafka's configuration of a producer with these settings."""
    return {
        "bootstrap.servers": settings.bootstrap,
        "client.id": settings.client_id,
        "logger": CLIENT_LOG,
        "enable.idempotence": True,  # implies acks=all, retries, max 5 in flight, in order
        "acks": "all",
        # CRC-32 of the key mod the partition count: the partition of a ticker or a user is
        # the shard `domain.sharding.shard_of` computes, so a consumer knows what it owns.
        "partitioner": "consistent",
        "linger.ms": settings.linger_ms,
        "compression.type": settings.compression,
        "delivery.timeout.ms": settings.delivery_timeout_ms,
        "request.timeout.ms": min(5_000, settings.delivery_timeout_ms),
    }


class KafkaProducer:
    """Sends batches of messages and reports where each one landed."""

    def __init__(self, settings: ProducerSettings) -> None:
        self._settings = settings
        self._producer = Producer(producer_config(settings))

    def send(
        self, messages: Sequence[OutboxMessage], headers: Sequence[Headers] | None = None
    ) -> list[Delivered]:
        """Produce `messages` (with `headers[i]` each) and wait for every acknowledgement."""
        results: list[Delivered | KafkaError | None] = [None] * len(messages)

        def report(index: int, error: KafkaError | None, message: Message) -> None:
            if error is not None:
                results[index] = error
            else:
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                if topic is None or partition is None or offset is None:  # never on success
                    results[index] = KafkaError(KafkaError._FAIL, "delivery report without offset")
                else:
                    results[index] = Delivered(topic, partition, offset)

        for index, message in enumerate(messages):
            self._produce(message, list(headers[index]) if headers else [], index, report)
        deadline = time.monotonic() + self._settings.delivery_timeout_ms / 1000 + 5
        while any(r is None for r in results) and time.monotonic() < deadline:
            self._producer.flush(0.5)
        failed = [r for r in results if not isinstance(r, Delivered)]
        if failed:
            first = failed[0]
            reason = "no acknowledgement in time" if first is None else first.str()
            raise DeliveryFailed(
                f"{len(failed)} of {len(messages)} messages not delivered: {reason}"
            )
        return [r for r in results if isinstance(r, Delivered)]

    def _produce(self, message: OutboxMessage, headers: Headers, index: int, report: Any) -> None:
        while True:
            try:
                self._producer.produce(
                    message.topic,
                    value=message.value,
                    key=message.key,
                    headers=headers,
                    on_delivery=lambda error, msg: report(index, error, msg),
                )
                return
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: let deliveries drain
            except KafkaException as err:
                raise DeliveryFailed(f"cannot produce to {message.topic}: {err}") from err

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to `timeout_s`)."""
        left = self._producer.flush(timeout_s)
        if left:
            log.warning("event=kafka_producer_closed undelivered=%d", left)


def kafka_producer(settings: Mapping[str, Any]) -> Iterator[KafkaProducer]:
    """dependency-injector Resource: a producer, flushed on shutdown."""
    producer = KafkaProducer(ProducerSettings(**settings))
    try:
        yield producer
    finally:
        producer.close()

"""Apache Kafka through confluent-kafka: `topics` (names, keys, settings), `codec` (events as
versioned JSON), `producer` (idempotent, delivery reports checked), `consumer` (offsets
committed after the work, poison messages to the dead-letter topic), `admin` (topics and
cluster health), `relay` (the transactional outbox published exactly once).

Only `topics` and `codec` load without confluent-kafka's C library, so that the settings and
the unit of work can name topics and encode events cheaply."""

import logging

# librdkafka's own lines (a broker unreachable, a group rebalancing) reach Python logging
# through this logger, given to every client as its `logger`, instead of being printed to
# stderr by the C library: one format for all lines (STOCKALERT_LOG_FORMAT=json included).
# A client hands them over when it is polled; the admin clients are polled after each call.
CLIENT_LOG = logging.getLogger("stockalert.kafka.client")

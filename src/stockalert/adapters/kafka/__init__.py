"""Apache Kafka through confluent-kafka: `topics` (names, keys, settings), `codec` (events as
versioned JSON), `producer` (idempotent, delivery reports checked), `consumer` (offsets
committed after the work, poison messages to the dead-letter topic), `admin` (topics and
cluster health), `relay` (the transactional outbox published exactly once).

Only `topics` and `codec` load without confluent-kafka's C library, so that the settings and
the unit of work can name topics and encode events cheaply."""

"""`stockalert serve kafka-admin` (or `python -m stockalert.entrypoints.kafka_admin`):
Creates the topics that are missing (and reports those whose settings differ), then every
STOCKALERT_KAFKA_ADMIN_INTERVAL seconds logs the cluster's health: one line for the cluster
(brokers, controller, under-replicated and offline partitions) and one per topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stockalert.adapters.kafka.admin import CheckCluster, EnsureTopics
from stockalert.containers import KafkaAdmin
from stockalert.entrypoints import runtime
from stockalert.entrypoints.runtime import Loop, Plan
from stockalert.entrypoints.settings import kafka_admin_config

ROLE = "kafka-admin"
CONTAINER = KafkaAdmin
settings = kafka_admin_config  # ConfigError names a missing or bad variable


def plan(config: Mapping[str, Any], container: Any) -> Plan:
    """The topics ensured at start (retried until Kafka answers), then the health loop,
    which ensures them again: a topic deleted meanwhile comes back."""
    interval = float(config["kafka"]["admin_interval_s"])
    return Plan(
        ROLE,
        startup=(EnsureTopics(),),
        loops=[Loop("kafka-admin", (EnsureTopics(), CheckCluster()), interval)],
        database=None,
        needs_kafka=True,
    )


if __name__ == "__main__":
    runtime.main_for(ROLE)

"""Topics and cluster health: what the kafka-admin role does.

`ensure_topics` creates the topics that are missing, with their partitions, replication
factor and configuration, and reports an existing topic whose settings differ (it never
changes one: fewer partitions or another replication factor would need an operator).
`health` reads the cluster metadata: brokers online, the controller, and per topic its
partitions, leaders, in-sync replica counts, under-replicated and offline partitions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import attrs
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ClusterMetadata,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from stockalert.adapters.kafka import CLIENT_LOG
from stockalert.adapters.kafka.topics import Topics, TopicSpec
from stockalert.adapters.telemetry import Metrics
from stockalert.domain.commands import Command
from stockalert.domain.messagebus import HandlerSet
from stockalert.domain.ports import UnitOfWork

log = logging.getLogger(__name__)


@attrs.frozen
class EnsureReport:
    """What ensure_topics found and did."""

    created: list[str]
    present: list[str]
    mismatches: list[str]  # "topic: what differs"


@attrs.frozen
class TopicHealth:
    """One topic's partitions as the metadata shows them."""

    name: str
    partitions: int
    leaders: list[int]  # -1: no leader (offline)
    isr: list[int]  # in-sync replicas per partition
    replicas: int

    @property
    def under_replicated(self) -> int:
        return sum(1 for n in self.isr if n < self.replicas)

    @property
    def offline(self) -> int:
        return sum(1 for leader in self.leaders if leader < 0)


@attrs.frozen
class ClusterHealth:
    """Brokers, controller and topics."""

    brokers: list[int]
    controller: int
    topics: list[TopicHealth]
    missing: list[str]


class KafkaProbe:
    """Is the cluster reachable? (a readiness check: one metadata request, 2 s at most).
    The admin client is made at the first check, so a probe costs nothing until used."""

    def __init__(self, bootstrap: str, timeout_s: float = 2.0) -> None:
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s
        self._admin: AdminClient | None = None

    def check(self) -> None:
        if self._admin is None:
            config: dict[str, Any] = {
                "bootstrap.servers": self._bootstrap,
                "client.id": "stockalert-readiness",
                "logger": CLIENT_LOG,
            }
            self._admin = AdminClient(config)
        try:
            metadata = self._admin.list_topics(timeout=self._timeout_s)
        finally:
            self._admin.poll(0)  # hands over its log lines
        if not metadata.brokers:
            raise ConnectionError("no broker in the cluster's metadata")


class KafkaAdministrator:
    """Kafka's admin API, for the kafka-admin role and the tests."""

    def __init__(self, bootstrap: str, client_id: str = "stockalert-admin", timeout_s: float = 15):
        config: dict[str, Any] = {"bootstrap.servers": bootstrap, "client.id": client_id}
        self._admin = AdminClient(config | {"logger": CLIENT_LOG})
        self._timeout_s = timeout_s

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> EnsureReport:
        """Create the missing topics; report the existing ones that differ from their spec."""
        metadata = self._admin.list_topics(timeout=self._timeout_s)
        missing = [s for s in specs if s.name not in metadata.topics]
        created = []
        if missing:
            futures = self._admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication, config=dict(s.config))
                    for s in missing
                ],
                request_timeout=self._timeout_s,
            )
            for name, future in futures.items():
                try:
                    future.result()
                except KafkaException as err:
                    # The metadata we read was behind (a topic created moments ago): present.
                    if err.args[0].name() != "TOPIC_ALREADY_EXISTS":
                        raise
                else:
                    created.append(name)
        present = [s for s in specs if s.name not in created]
        metadata = self._settled(specs)
        mismatches = self._differences(present, metadata) if present else []
        return EnsureReport(sorted(created), sorted(s.name for s in present), mismatches)

    def _settled(self, specs: Sequence[TopicSpec]) -> ClusterMetadata:
        """Metadata that shows every topic of `specs` with a leader for each partition (it
        lags a creation by moments; clients asking meanwhile get NOT_LEADER errors)."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            metadata = self._admin.list_topics(timeout=self._timeout_s)
            shown = all(
                s.name in metadata.topics
                and metadata.topics[s.name].partitions
                and all(p.leader >= 0 for p in metadata.topics[s.name].partitions.values())
                for s in specs
            )
            if shown or time.monotonic() > deadline:
                return metadata
            time.sleep(0.2)

    def configs(self, names: Sequence[str]) -> dict[str, dict[str, str | None]]:
        """The configuration of each topic, by key. A topic created moments ago may be
        unknown yet to the broker asked (metadata spreads to every broker in moments): that
        answer is retried until the timeout."""
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
        deadline = time.monotonic() + self._timeout_s
        while True:
            futures = self._admin.describe_configs(resources, request_timeout=self._timeout_s)
            try:
                return {
                    resource.name: {
                        key: entry.value
                        for key, entry in future.result(timeout=self._timeout_s).items()
                    }
                    for resource, future in futures.items()
                }
            except KafkaException as err:
                if err.args[0].name() != "UNKNOWN_TOPIC_OR_PART" or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def _differences(self, specs: Sequence[TopicSpec], metadata: ClusterMetadata) -> list[str]:
        found: list[str] = []
        configs = self.configs([s.name for s in specs])
        for spec in specs:
            partitions = metadata.topics[spec.name].partitions
            if len(partitions) != spec.partitions:
                found.append(
                    f"{spec.name}: {len(partitions)} partitions, expected {spec.partitions}"
                )
            replication = {len(p.replicas) for p in partitions.values()}
            if replication != {spec.replication}:
                shown = ",".join(map(str, sorted(replication)))
                found.append(
                    f"{spec.name}: replication factor {shown}, expected {spec.replication}"
                )
            for key, wanted in sorted(spec.config.items()):
                actual = configs[spec.name].get(key)
                if actual != wanted:
                    found.append(f"{spec.name}: {key}={actual}, expected {wanted}")
        return found

    def health(self, names: Sequence[str]) -> ClusterHealth:
        """The cluster as its metadata shows it now."""
        self._admin.poll(0)  # hands over the log lines queued since the last call
        metadata = self._admin.list_topics(timeout=self._timeout_s)
        topics = []
        for name in names:
            topic = metadata.topics.get(name)
            if topic is None:
                continue
            parts = [topic.partitions[p] for p in sorted(topic.partitions)]
            topics.append(
                TopicHealth(
                    name,
                    len(parts),
                    [p.leader for p in parts],
                    [len(p.isrs) for p in parts],
                    max((len(p.replicas) for p in parts), default=0),
                )
            )
        return ClusterHealth(
            sorted(metadata.brokers),
            metadata.controller_id,
            topics,
            [n for n in names if n not in metadata.topics],
        )

    def delete_topics(self, names: Sequence[str]) -> None:
        """Delete topics (tests start from an empty cluster this way)."""
        futures = self._admin.delete_topics(list(names), request_timeout=self._timeout_s)
        for future in futures.values():
            try:
                future.result()
            except KafkaException as err:
                if err.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                    raise


# ----- the kafka-admin role's commands -----------------------------------------------------------


@attrs.frozen
class EnsureTopics(Command):
    """Create the missing topics; report those that differ."""


@attrs.frozen
class CheckCluster(Command):
    """Log the cluster's health: one line for the cluster, one per topic."""


def ensure_topics(
    cmd: EnsureTopics, uow: UnitOfWork, *, admin: KafkaAdministrator, topics: Topics
) -> EnsureReport:
    """The topics of `topics`, created where missing; one line per topic."""
    specs = topics.specs()
    report = admin.ensure_topics(specs)
    for spec in specs:
        if spec.name in report.created:
            log.info(
                "event=kafka_topic_created topic=%s partitions=%d replication=%d config=%s",
                spec.name,
                spec.partitions,
                spec.replication,
                ",".join(f"{k}={v}" for k, v in sorted(spec.config.items())) or "-",
            )
        else:
            log.info("event=kafka_topic_present topic=%s", spec.name)
    for problem in report.mismatches:
        log.error("event=kafka_topic_mismatch problem=%r", problem)
    return report


def check_cluster(
    cmd: CheckCluster,
    uow: UnitOfWork,
    *,
    admin: KafkaAdministrator,
    topics: Topics,
    metrics: Metrics | None = None,
) -> ClusterHealth:
    """One structured line for the cluster, one per topic; the same as metrics."""
    health = admin.health([s.name for s in topics.specs()])
    under = sum(t.under_replicated for t in health.topics)
    offline = sum(t.offline for t in health.topics)
    if metrics is not None:
        metrics.kafka_brokers.labels(metrics.role).set(len(health.brokers))
        for topic in health.topics:
            metrics.kafka_under_replicated.labels(metrics.role, topic.name).set(
                topic.under_replicated
            )
            metrics.kafka_offline.labels(metrics.role, topic.name).set(topic.offline)
    level = logging.INFO if not (under or offline or health.missing) else logging.WARNING
    log.log(
        level,
        "event=kafka_cluster brokers=%d broker_ids=%s controller=%d topics=%d missing=%s "
        "under_replicated=%d offline=%d",
        len(health.brokers),
        ",".join(map(str, health.brokers)),
        health.controller,
        len(health.topics),
        ",".join(health.missing) or "-",
        under,
        offline,
    )
    for topic in health.topics:
        log.log(
            logging.INFO if not (topic.under_replicated or topic.offline) else logging.WARNING,
            "event=kafka_topic topic=%s partitions=%d leaders=%s isr=%s replicas=%d "
            "under_replicated=%d offline=%d",
            topic.name,
            topic.partitions,
            ",".join(map(str, topic.leaders)),
            ",".join(map(str, topic.isr)),
            topic.replicas,
            topic.under_replicated,
            topic.offline,
        )
    return health


def administration(
    *, admin: KafkaAdministrator, topics: Topics, metrics: Metrics | None = None
) -> HandlerSet:
    """The kafka-admin role's handlers."""
    return HandlerSet(
        commands={
            EnsureTopics: partial(ensure_topics, admin=admin, topics=topics),
            CheckCluster: partial(check_cluster, admin=admin, topics=topics, metrics=metrics),
        }
    )

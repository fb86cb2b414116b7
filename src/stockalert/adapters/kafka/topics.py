"""The topics: their names, what they carry (key and value), and how they are created."""

from __future__ import annotations

import attrs

TO_ALERT_SYSTEM = "to-alert-system"  # PriceUpdated, key = ticker
TO_NOTIFIER = "to-notifier"  # Notification (AlertRaised), key = user id
SUBSCRIPTION_CHANGES = "stockalert.subscription-changes"  # compacted, key = subscription id
DEAD_LETTER = "stockalert.dead-letter"  # what a consumer could not read, with the reason

DAY_MS = 24 * 3600 * 1000


@attrs.frozen
class TopicSpec:
    """One topic as kafka-admin creates it."""

    name: str
    partitions: int
    replication: int
    config: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Topics:
    """The topic names of one deployment (a prefix lets several share a cluster) and the
    settings kafka-admin creates them with."""

    prefix: str = ""
    partitions: int = 6
    replication: int = 3
    min_insync: int = 2

    @property
    def to_alert_system(self) -> str:
        return self.prefix + TO_ALERT_SYSTEM

    @property
    def to_notifier(self) -> str:
        return self.prefix + TO_NOTIFIER

    @property
    def subscription_changes(self) -> str:
        return self.prefix + SUBSCRIPTION_CHANGES

    @property
    def dead_letter(self) -> str:
        return self.prefix + DEAD_LETTER

    def group(self, role: str) -> str:
        """The consumer group of a role's instances (`stockalert.alert-system`, ...)."""
        return f"{self.prefix}stockalert.{role}"

    def specs(self) -> list[TopicSpec]:
        """Every topic, as kafka-admin ensures it."""
        durable = {"min.insync.replicas": str(self.min_insync)}
        return [
            TopicSpec(self.to_alert_system, self.partitions, self.replication, durable),
            TopicSpec(self.to_notifier, self.partitions, self.replication, durable),
            TopicSpec(
                self.subscription_changes,
                self.partitions,
                self.replication,
                {**durable, "cleanup.policy": "compact"},
            ),
            TopicSpec(
                self.dead_letter,
                1,  # rare, read by people: one partition keeps them in order
                self.replication,
                {**durable, "retention.ms": str(30 * DAY_MS)},
            ),
        ]

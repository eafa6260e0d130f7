"""Drift planning: what differs between the topic definitions and a cluster, and what
``apply`` may do about it.

:func:`compare` is pure: it takes a snapshot of the cluster (:class:`ClusterState`, read
by :mod:`pipeline.topology.admin`) and returns a :class:`Plan`. A drift apply can fix is
a change; shrinking partitions or changing ``cleanup.policy`` is unsafe and refused;
replication is reported and left alone (apply never moves replicas between brokers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from pipeline.config import Settings
from pipeline.topology.definitions import Topology

__all__ = ["ClusterState", "Drift", "DriftKind", "Plan", "compare"]

# Configs whose change apply refuses: switching delete <-> compact changes what the
# topic means to its readers (a changelog that starts deleting loses state).
_UNSAFE_CONFIGS = frozenset({"cleanup.policy"})


class DriftKind(StrEnum):
    MISSING_TOPIC = "missing topic"
    PARTITION_MISMATCH = "partition mismatch"
    CONFIG_MISMATCH = "config mismatch"
    REPLICATION_MISMATCH = "replication mismatch"


@dataclass(frozen=True)
class Drift:
    """One difference between a definition and the cluster (physical topic name)."""

    topic: str
    kind: DriftKind
    wanted: str
    current: str | None = None
    config: str | None = None
    unsafe: str | None = None
    """Why apply refuses this change, or None when apply can make it."""

    def __str__(self) -> str:
        if self.kind is DriftKind.MISSING_TOPIC:
            return f"{self.topic}: missing (wanted {self.wanted})"
        what = {
            DriftKind.PARTITION_MISMATCH: "partitions",
            DriftKind.REPLICATION_MISMATCH: "replication",
        }.get(self.kind, self.config)
        return f"{self.topic}: {what} is {self.current}, wanted {self.wanted}"

    @property
    def fixable(self) -> bool:
        """Whether apply makes this change (it never moves replicas between brokers)."""
        return self.unsafe is None and self.kind is not DriftKind.REPLICATION_MISMATCH

    def advice(self) -> str:
        """What to do about a drift apply does not fix (empty when apply fixes it)."""
        if self.kind is DriftKind.REPLICATION_MISMATCH:
            return (
                "apply does not change replication: reassign the partitions "
                "(kafka-reassign-partitions.sh), or set PIPELINE_TOPIC_REPLICATION_FACTOR="
                f"{self.current} if that is what you want"
            )
        return f"unsafe: {self.unsafe}" if self.unsafe else ""

    def describe_change(self) -> str:
        """What apply does about this drift."""
        if self.kind is DriftKind.MISSING_TOPIC:
            return f"create {self.topic} ({self.wanted})"
        if self.kind is DriftKind.PARTITION_MISMATCH:
            return f"add partitions to {self.topic}: {self.current} -> {self.wanted}"
        return f"set {self.config} on {self.topic}: {self.current} -> {self.wanted}"


@dataclass(frozen=True)
class Plan:
    """The drifts between the definitions and the cluster, split by what apply may do."""

    drifts: tuple[Drift, ...]
    topology: Topology = field(repr=False)
    brokers: int = 0
    """Brokers the cluster's metadata lists."""

    @property
    def changes(self) -> tuple[Drift, ...]:
        """Drifts apply fixes."""
        return tuple(d for d in self.drifts if d.fixable)

    @property
    def left_alone(self) -> tuple[Drift, ...]:
        """Safe drifts apply cannot fix (replication): reported, not refused."""
        return tuple(d for d in self.drifts if not d.fixable and d.unsafe is None)

    @property
    def unsafe(self) -> tuple[Drift, ...]:
        """Drifts apply refuses to fix; any of them stops apply before it changes anything."""
        return tuple(d for d in self.drifts if d.unsafe is not None)

    def __bool__(self) -> bool:
        return bool(self.drifts)


@dataclass(frozen=True)
class ClusterState:
    """What the cluster holds of the wanted topics (physical names)."""

    partitions: Mapping[str, int]
    """Partition count of each wanted topic that exists."""
    replication: Mapping[str, int]
    """The fewest replicas of any partition of each wanted topic that exists."""
    configs: Mapping[str, Mapping[str, str]]
    """The configs of each wanted topic that exists."""
    brokers: int
    """Brokers the cluster's metadata lists."""


def compare(topology: Topology, settings: Settings, cluster: ClusterState) -> Plan:
    """The drifts between ``topology`` and ``cluster`` (physical names via ``settings.topic``).

    Only the configs a definition names are compared; ``settings.topic_replication_factor``
    overrides the definitions' replication factors.
    """
    topology = topology.with_replication_factor(settings.topic_replication_factor)
    drifts: list[Drift] = []
    for topic in topology:
        physical = settings.topic(topic.name)
        if physical not in cluster.partitions:
            drifts.append(
                Drift(
                    physical,
                    DriftKind.MISSING_TOPIC,
                    wanted=f"{topic.partitions} partitions, replication {topic.replication_factor}",
                )
            )
            continue
        drifts.extend(_partition_drift(physical, cluster.partitions[physical], topic.partitions))
        replication = cluster.replication[physical]
        if replication != topic.replication_factor:
            drifts.append(
                Drift(
                    physical,
                    DriftKind.REPLICATION_MISMATCH,
                    current=str(replication),
                    wanted=str(topic.replication_factor),
                )
            )
        drifts.extend(_config_drifts(physical, cluster.configs[physical], topic.configs))
    return Plan(tuple(drifts), topology, cluster.brokers)


def _partition_drift(topic: str, current: int, wanted: int) -> list[Drift]:
    if current == wanted:
        return []
    unsafe = None
    if current > wanted:
        unsafe = (
            f"{topic} has {current} partitions and the definition wants {wanted}: Kafka "
            "cannot remove partitions; set partitions back to "
            f"{current} in the definition, or recreate the topic (losing its data)"
        )
    return [
        Drift(
            topic,
            DriftKind.PARTITION_MISMATCH,
            current=str(current),
            wanted=str(wanted),
            unsafe=unsafe,
        )
    ]


def _config_drifts(
    topic: str, current: Mapping[str, str], wanted: Mapping[str, str]
) -> list[Drift]:
    drifts = []
    for name, value in sorted(wanted.items()):
        now = current.get(name)
        if now is not None and _same_config(name, now, value):
            continue
        unsafe = None
        if name in _UNSAFE_CONFIGS and now is not None:
            unsafe = (
                f"{topic} has {name}={now} and the definition wants {value}: changing "
                "it changes what readers of the topic can rely on; keep "
                f'{name}: "{now}" in the definition, or migrate to a new topic'
            )
        drifts.append(
            Drift(
                topic,
                DriftKind.CONFIG_MISMATCH,
                current=now,
                wanted=value,
                config=name,
                unsafe=unsafe,
            )
        )
    return drifts


def _same_config(name: str, current: str, wanted: str) -> bool:
    if name == "cleanup.policy":  # a list: "compact,delete" == "delete,compact"
        return {p.strip() for p in current.split(",")} == {p.strip() for p in wanted.split(",")}
    return current == wanted

"""What a topic is: one definition per ``topics/<name>.yaml``, and the set of them.

A :class:`TopicDefinition` is the logical topic (its name before any prefix), frozen once
loaded; a :class:`Topology` is every definition of a deployment, sorted by name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

__all__ = ["TopicDefinition", "TopicKind", "Topology"]

TopicKind = Literal["conversation", "changelog", "internal"]


@dataclass(frozen=True)
class TopicDefinition:
    """One topic as ``topics/<name>.yaml`` describes it (logical name, before any prefix)."""

    name: str
    kind: TopicKind
    partitions: int
    replication_factor: int
    key: str
    doc: str
    value_schema: str | None = None
    co_partitioned: bool = False
    configs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def with_replication_factor(self, replication_factor: int) -> TopicDefinition:
        """This definition with another replication factor, ``min.insync.replicas`` capped."""
        configs = dict(self.configs)
        if "min.insync.replicas" in configs:
            capped = min(int(configs["min.insync.replicas"]), replication_factor)
            configs["min.insync.replicas"] = str(capped)
        return replace(
            self, replication_factor=replication_factor, configs=MappingProxyType(configs)
        )


@dataclass(frozen=True)
class Topology:
    """Every topic definition, sorted by name."""

    topics: tuple[TopicDefinition, ...]

    def __iter__(self) -> Iterator[TopicDefinition]:
        return iter(self.topics)

    def __len__(self) -> int:
        return len(self.topics)

    def __getitem__(self, name: str) -> TopicDefinition:
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(topic.name for topic in self.topics)

    @property
    def co_partition_count(self) -> int | None:
        """The partition count shared by co-partitioned topics (None if there are none)."""
        counts = {t.partitions for t in self.topics if t.co_partitioned}
        return counts.pop() if counts else None

    def with_replication_factor(self, replication_factor: int | None) -> Topology:
        """Every definition with this replication factor (None: unchanged)."""
        if replication_factor is None:
            return self
        return Topology(tuple(t.with_replication_factor(replication_factor) for t in self))

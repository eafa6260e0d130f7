"""Topic definitions loaded from ``topics/``, compared with a cluster and applied to it.

``topics/`` is the single source of truth for topics: one YAML file per topic. Loading
validates every file strictly and enforces co-partitioning (every ``conversation`` topic
and every ``co_partitioned`` changelog has the same partition count, so one
conversation's events land on the same partition number everywhere).

Against a cluster, :func:`plan` lists the drifts; :func:`apply` fixes the safe ones
(create missing topics, add partitions, set configs) and refuses, before changing
anything, to shrink partitions or change ``cleanup.policy``; :func:`check` only reports.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar, cast, get_args

import yaml
from confluent_kafka import KafkaError, KafkaException

# confluent_kafka.admin re-exports these without an __all__, which mypy --strict rejects.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from pipeline.config import Settings
from pipeline.errors import BrokerUnavailableError, TopologyError, UnsafeTopicChangeError
from pipeline.observability.kafka_logs import ClusterConnection, cli_connection, wait_for_metadata

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "Drift",
    "DriftKind",
    "Plan",
    "TopicDefinition",
    "TopicKind",
    "Topology",
    "admin_client",
    "apply",
    "check",
    "load_settings_topology",
    "load_topology",
    "plan",
]

TopicKind = Literal["conversation", "changelog", "internal"]
_KINDS: tuple[str, ...] = get_args(TopicKind)

_REQUIRED_KEYS = frozenset({"name", "kind", "doc", "partitions", "replication_factor", "key"})
_OPTIONAL_KEYS = frozenset({"configs", "value_schema", "co_partitioned"})
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")

# Configs whose change apply refuses: switching delete <-> compact changes what the
# topic means to its readers (a changelog that starts deleting loses state).
_UNSAFE_CONFIGS = frozenset({"cleanup.policy"})

DEFAULT_TIMEOUT_SECONDS = 30.0


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


# --------------------------------------------------------------------------- loading


def load_topology(
    folder: Path | str,
    *,
    schemas_dir: Path | str | None = None,
    replication_factor: int | None = None,
    extra_folders: Iterable[Path | str] = (),
    extra_schema_dirs: Iterable[Path | str] = (),
) -> Topology:
    """Load and validate every ``*.yaml`` file of ``folder`` and of ``extra_folders``.

    ``extra_folders`` add a project's own topics next to ``folder``'s; a topic name defined
    in two files is a TopologyError naming both. With ``schemas_dir``, each
    ``value_schema`` must exist as ``<fullname>.avsc`` there or in ``extra_schema_dirs``.
    With ``replication_factor``, it replaces every definition's replication factor.
    Raises TopologyError naming the file and the problem.
    """
    folders = [Path(folder), *(Path(extra) for extra in extra_folders)]
    schema_dirs = [] if schemas_dir is None else [Path(schemas_dir)]
    schema_dirs += [Path(extra) for extra in extra_schema_dirs]

    topics: dict[str, TopicDefinition] = {}
    sources: dict[str, Path] = {}
    for where in folders:
        for path in _definition_files(where):
            topic = _load_file(path)
            if topic.name in topics:
                raise TopologyError(
                    f"topic {topic.name!r} is defined twice: in {sources[topic.name]} and in "
                    f"{path}; an extra folder adds topics, it cannot replace one"
                )
            topics[topic.name] = topic
            sources[topic.name] = path
            if schema_dirs and topic.value_schema is not None:
                _check_value_schema(path, topic.value_schema, schema_dirs)

    topology = Topology(tuple(topics[name] for name in sorted(topics)))
    _check_co_partitioning(topology)
    return topology.with_replication_factor(replication_factor)


def load_settings_topology(settings: Settings) -> Topology:
    """The topology of ``settings``' topic folders, checked against its schema folders."""
    return load_topology(
        settings.resource_dir("topics"),
        schemas_dir=settings.resource_dir("schemas"),
        replication_factor=settings.topic_replication_factor,
        extra_folders=settings.extra_topic_dirs,
        extra_schema_dirs=settings.extra_schema_dirs,
    )


def _definition_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise TopologyError(f"topic definitions folder {folder} does not exist")
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    if not files:
        raise TopologyError(f"no topic definitions (*.yaml) in {folder}")
    return files


def _check_value_schema(path: Path, value_schema: str, schema_dirs: list[Path]) -> None:
    candidates = [folder / f"{value_schema}.avsc" for folder in schema_dirs]
    if not any(candidate.is_file() for candidate in candidates):
        expected = " or ".join(str(c) for c in candidates)
        raise TopologyError(
            f"{path.name}: value_schema {value_schema!r} not found (expected {expected})"
        )


def _load_file(path: Path) -> TopicDefinition:
    where = path.name
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TopologyError(f"{where}: cannot read topic definition: {exc}") from exc
    if not isinstance(raw, dict):
        raise TopologyError(f"{where}: expected a mapping of topic settings")

    unknown = sorted(str(k) for k in raw.keys() - _REQUIRED_KEYS - _OPTIONAL_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_REQUIRED_KEYS | _OPTIONAL_KEYS))
        raise TopologyError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {allowed})")
    missing = sorted(_REQUIRED_KEYS - raw.keys())
    if missing:
        raise TopologyError(f"{where}: missing key(s) {', '.join(missing)}")

    name = _typed(raw, "name", str, where)
    if not _TOPIC_NAME.match(name):
        raise TopologyError(f"{where}: invalid topic name {name!r} (letters, digits, . _ -)")
    if name != path.stem:
        raise TopologyError(f"{where}: name {name!r} must match the file name ({name}.yaml)")

    kind = _typed(raw, "kind", str, where)
    if kind not in _KINDS:
        raise TopologyError(f"{where}: kind {kind!r} is not one of {', '.join(_KINDS)}")

    partitions = _typed(raw, "partitions", int, where)
    if partitions < 1:
        raise TopologyError(f"{where}: partitions must be at least 1, not {partitions}")
    replication = _typed(raw, "replication_factor", int, where)
    if replication < 1:
        raise TopologyError(f"{where}: replication_factor must be at least 1, not {replication}")

    co_partitioned = raw.get("co_partitioned", kind == "conversation")
    if not isinstance(co_partitioned, bool):
        raise TopologyError(f"{where}: co_partitioned must be true or false")
    if kind == "conversation" and not co_partitioned:
        raise TopologyError(f"{where}: conversation topics are always co-partitioned")

    value_schema = raw.get("value_schema")
    if value_schema is not None and (
        not isinstance(value_schema, str) or not _SCHEMA_NAME.match(value_schema)
    ):
        raise TopologyError(
            f"{where}: value_schema must be an Avro full name such as "
            f"pipeline.events.MessageReceived, not {value_schema!r}"
        )
    if kind == "conversation" and value_schema is None:
        raise TopologyError(f"{where}: conversation topics need a value_schema")

    configs = _configs(raw.get("configs"), where)
    insync = configs.get("min.insync.replicas")
    if insync is not None and (not insync.isdigit() or int(insync) > replication):
        raise TopologyError(
            f"{where}: min.insync.replicas {insync!r} must be a number no larger than "
            f"replication_factor ({replication})"
        )

    return TopicDefinition(
        name=name,
        kind=cast(TopicKind, kind),
        partitions=partitions,
        replication_factor=replication,
        key=_typed(raw, "key", str, where),
        doc=_typed(raw, "doc", str, where),
        value_schema=value_schema,
        co_partitioned=co_partitioned,
        configs=MappingProxyType(configs),
    )


_T = TypeVar("_T")


def _typed(raw: Mapping[str, Any], key: str, kind: type[_T], where: str) -> _T:
    value = raw[key]
    # bool is an int in Python; `partitions: true` is a mistake, not 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = {int: "an integer", str: "a string"}.get(kind, kind.__name__)
        raise TopologyError(f"{where}: {key} must be {expected}, not {value!r}")
    return value


def _configs(raw: object, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TopologyError(f"{where}: configs must be a mapping of Kafka topic configs")
    configs: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TopologyError(
                f'{where}: config {key!r} must be a quoted string ("{value}"), '
                "as Kafka topic configs are strings"
            )
        configs[key] = value
    return configs


def _check_co_partitioning(topology: Topology) -> None:
    by_count: dict[int, list[str]] = {}
    for topic in topology:
        if topic.co_partitioned:
            by_count.setdefault(topic.partitions, []).append(topic.name)
    if len(by_count) > 1:
        groups = "; ".join(
            f"{count}: {', '.join(names)}" for count, names in sorted(by_count.items())
        )
        raise TopologyError(
            "conversation topics and co-partitioned changelogs must share one partition "
            f"count, found {groups}"
        )


# --------------------------------------------------------------------------- drifts


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


# --------------------------------------------------------------------------- cluster


class _Admin(AdminClient):
    """An AdminClient that remembers the connection its callbacks report to."""

    connection: ClusterConnection


def admin_client(settings: Settings) -> AdminClient:
    """An AdminClient for the cluster of ``settings``.

    librdkafka's own log lines go through :mod:`pipeline.observability.kafka_logs`
    instead of stderr; a cluster that cannot be reached surfaces as one TopologyError
    naming the bootstrap servers, as soon as librdkafka reports every broker down.
    """
    connection = cli_connection(settings.bootstrap_servers)
    admin = _Admin({**settings.client_config(), **connection.client_config()})
    admin.connection = connection
    return admin


def plan(
    admin: AdminClient,
    topology: Topology,
    settings: Settings,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Plan:
    """Compare the cluster with ``topology`` (physical names via ``settings.topic``).

    Only the configs a definition names are compared; ``settings.topic_replication_factor``
    overrides the definitions' replication factors.
    """
    topology = topology.with_replication_factor(settings.topic_replication_factor)
    cluster = _cluster(admin, [settings.topic(t.name) for t in topology], timeout)
    existing = cluster.partitions
    present = [t for t in topology if settings.topic(t.name) in existing]
    current_configs = _describe_configs(admin, [settings.topic(t.name) for t in present], timeout)

    drifts: list[Drift] = []
    for topic in topology:
        physical = settings.topic(topic.name)
        if physical not in existing:
            drifts.append(
                Drift(
                    physical,
                    DriftKind.MISSING_TOPIC,
                    wanted=f"{topic.partitions} partitions, replication {topic.replication_factor}",
                )
            )
            continue
        drifts.extend(_partition_drift(physical, existing[physical], topic.partitions))
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
        drifts.extend(_config_drifts(physical, current_configs[physical], topic.configs))
    return Plan(tuple(drifts), topology, cluster.brokers)


def check(
    admin: AdminClient,
    topology: Topology,
    settings: Settings,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> list[Drift]:
    """Every drift between the cluster and the definitions; an empty list means in sync."""
    return list(plan(admin, topology, settings, timeout=timeout).drifts)


def apply(
    admin: AdminClient,
    topology: Topology,
    settings: Settings,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> list[Drift]:
    """Make the cluster match the definitions and return the changes made.

    Creates missing topics, adds partitions and sets configs. Raises
    UnsafeTopicChangeError, before changing anything, if that would mean shrinking a
    topic's partitions or changing its ``cleanup.policy``. Running it twice changes
    nothing the second time.
    """
    the_plan = plan(admin, topology, settings, timeout=timeout)
    if the_plan.unsafe:
        raise UnsafeTopicChangeError(
            "refusing to apply topic definitions, nothing was changed: "
            + "; ".join(d.unsafe or "" for d in the_plan.unsafe)
        )
    changes = the_plan.changes
    if not changes:
        return []

    definitions = {settings.topic(t.name): t for t in the_plan.topology}
    _check_replication_fits(
        [definitions[d.topic] for d in changes if d.kind is DriftKind.MISSING_TOPIC],
        the_plan.brokers,
        settings,
    )
    _create_topics(
        admin,
        [definitions[d.topic] for d in changes if d.kind is DriftKind.MISSING_TOPIC],
        settings,
        timeout,
    )
    _add_partitions(
        admin,
        {
            d.topic: definitions[d.topic].partitions
            for d in changes
            if d.kind is DriftKind.PARTITION_MISMATCH
        },
        timeout,
    )
    _set_configs(admin, [d for d in changes if d.kind is DriftKind.CONFIG_MISMATCH], timeout)
    _wait_until_converged(admin, the_plan.topology, settings, timeout)
    return list(changes)


def _check_replication_fits(
    topics: list[TopicDefinition], brokers: int, settings: Settings
) -> None:
    """Refuse, before creating anything, topics that want more replicas than brokers."""
    wanted = max((t.replication_factor for t in topics), default=0)
    if brokers and wanted > brokers:
        raise TopologyError(_replication_hint(wanted, brokers, settings))


def _replication_hint(wanted: int, brokers: int | None, settings: Settings) -> str:
    have = f"has {brokers} broker(s)" if brokers else "has fewer brokers than that"
    return (
        f"topics want replication {wanted} but the cluster at {settings.bootstrap_servers} "
        f"{have}: for development set PIPELINE_TOPIC_REPLICATION_FACTOR="
        f"{brokers or 1}, or run more brokers (`pipeline kafka start --brokers 3`); "
        "nothing was created"
    )


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


# --------------------------------------------------------------------------- admin calls


@dataclass(frozen=True)
class _Cluster:
    partitions: dict[str, int]
    """Partition count of each wanted topic that exists."""
    replication: dict[str, int]
    """The fewest replicas of any partition of each wanted topic that exists."""
    brokers: int


def _cluster(admin: AdminClient, topics: Iterable[str], timeout: float) -> _Cluster:
    wanted = set(topics)
    connection: ClusterConnection | None = getattr(admin, "connection", None)
    try:
        if connection is not None:
            metadata = wait_for_metadata(admin, connection, timeout)
        else:
            metadata = admin.list_topics(timeout=timeout)
    except BrokerUnavailableError as exc:
        raise TopologyError(f"cannot list topics: {exc}") from None
    except KafkaException as exc:
        raise TopologyError(f"cannot list topics: {_reason(exc)}") from exc
    found = {
        name: meta
        for name, meta in metadata.topics.items()
        if name in wanted and meta.error is None
    }
    return _Cluster(
        partitions={name: len(meta.partitions) for name, meta in found.items()},
        replication={
            name: min((len(p.replicas) for p in meta.partitions.values()), default=0)
            for name, meta in found.items()
        },
        brokers=len(metadata.brokers),
    )


def _describe_configs(
    admin: AdminClient, topics: list[str], timeout: float
) -> dict[str, dict[str, str]]:
    if not topics:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in topics]
    futures = admin.describe_configs(resources, request_timeout=timeout)
    configs: dict[str, dict[str, str]] = {}
    for resource, future in futures.items():
        entries = cast(
            "dict[str, ConfigEntry]",
            _result(future, f"describe configs of {resource.name}", timeout),
        )
        configs[resource.name] = {
            name: entry.value for name, entry in entries.items() if entry.value is not None
        }
    return configs


def _create_topics(
    admin: AdminClient, topics: list[TopicDefinition], settings: Settings, timeout: float
) -> None:
    if not topics:
        return
    new_topics = [
        NewTopic(
            settings.topic(t.name),
            num_partitions=t.partitions,
            replication_factor=t.replication_factor,
            config=dict(t.configs),
        )
        for t in topics
    ]
    futures = admin.create_topics(new_topics, operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            # Another apply running at the same moment may have created it: that is fine.
            _result(future, f"create topic {name}", timeout, ok=KafkaError.TOPIC_ALREADY_EXISTS)
        except TopologyError as exc:
            if isinstance(exc.__cause__, KafkaException) and (
                _code(exc.__cause__) == KafkaError.INVALID_REPLICATION_FACTOR
            ):
                wanted = max(t.replication_factor for t in topics)
                raise TopologyError(
                    f"cannot create topic {name}: " + _replication_hint(wanted, None, settings)
                ) from exc
            raise


def _add_partitions(admin: AdminClient, counts: Mapping[str, int], timeout: float) -> None:
    if not counts:
        return
    new_partitions = [NewPartitions(name, count) for name, count in counts.items()]
    futures = admin.create_partitions(
        new_partitions, operation_timeout=timeout, request_timeout=timeout
    )
    for name, future in futures.items():
        _result(future, f"add partitions to {name} (up to {counts[name]})", timeout)


def _set_configs(admin: AdminClient, drifts: list[Drift], timeout: float) -> None:
    if not drifts:
        return
    by_topic: dict[str, list[ConfigEntry]] = {}
    for drift in drifts:
        assert drift.config is not None
        by_topic.setdefault(drift.topic, []).append(
            ConfigEntry(drift.config, drift.wanted, incremental_operation=AlterConfigOpType.SET)
        )
    resources = [
        ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        for name, entries in by_topic.items()
    ]
    futures = admin.incremental_alter_configs(resources, request_timeout=timeout)
    for resource, future in futures.items():
        _result(future, f"set configs of {resource.name}", timeout)


def _wait_until_converged(
    admin: AdminClient, topology: Topology, settings: Settings, timeout: float
) -> None:
    """Return once the cluster's metadata shows the changes, so a re-plan finds none."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pending = plan(admin, topology, settings, timeout=timeout).changes
        except TopologyError as exc:  # e.g. a new topic not yet describable: retry
            left = str(exc)
        else:
            if not pending:
                return
            left = "; ".join(str(d) for d in pending)
        if time.monotonic() >= deadline:
            raise TopologyError(
                f"changes were made but the cluster did not show them within {timeout}s: {left}"
            )
        time.sleep(0.2)


def _result(future: Future[Any], action: str, timeout: float, *, ok: int | None = None) -> object:
    try:
        return future.result(timeout=timeout)
    except KafkaException as exc:
        if ok is not None and _code(exc) == ok:
            return None
        raise TopologyError(f"cannot {action}: {_reason(exc)}") from exc
    except FutureTimeoutError as exc:
        raise TopologyError(
            f"cannot {action}: no answer from the cluster within {timeout}s"
        ) from exc


def _code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        return f"{error.str()} ({error.name()})"
    return str(exc)

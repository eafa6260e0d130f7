"""Loading topic definitions from ``topics/`` folders, strictly validated.

Every ``*.yaml`` file of a folder is one topic; a file with an unknown key, a missing
key or a value of the wrong type is a TopologyError naming the file and the field.
Loading enforces co-partitioning: every ``conversation`` topic and every
``co_partitioned`` changelog has the same partition count, so one conversation's events
land on the same partition number everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar, cast, get_args

import yaml

from pipeline.config import Settings
from pipeline.errors import TopologyError
from pipeline.topology.definitions import TopicDefinition, TopicKind, Topology

__all__ = ["load_settings_topology", "load_topology"]

_KINDS: tuple[str, ...] = get_args(TopicKind)

_REQUIRED_KEYS = frozenset({"name", "kind", "doc", "partitions", "replication_factor", "key"})
_OPTIONAL_KEYS = frozenset({"configs", "value_schema", "co_partitioned"})
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


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

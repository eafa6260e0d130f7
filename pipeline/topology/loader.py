"""Loading topic definitions from ``topics/`` folders, strictly validated.

Every ``*.yaml`` file of a folder is one topic; a file with an unknown key, a missing
key or a value of the wrong type is a TopologyError naming the file and the field.
Loading enforces co-partitioning: every ``conversation`` topic and every
``co_partitioned`` changelog has the same partition count, so one conversation's events
land on the same partition number everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from pipeline.config import Settings
from pipeline.errors import TopologyError
from pipeline.file_cache import FolderCache, folder_signature
from pipeline.topology.definitions import TopicDefinition, Topology, parse_definition

__all__ = ["load_settings_topology", "load_topology"]


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
    """The topology of ``settings``' topic folders, checked against its schema folders.

    Read again only when a file of those folders changed (a topology is immutable)."""
    topics = (settings.resource_dir("topics"), *settings.extra_topic_dirs)
    schemas = (settings.resource_dir("schemas"), *settings.extra_schema_dirs)
    key = (
        folder_signature(topics, ("*.yaml", "*.yml")),
        folder_signature(schemas, ("*.avsc",)),
        settings.topic_replication_factor,
    )
    return _LOADED.get(
        key,
        lambda: load_topology(
            settings.resource_dir("topics"),
            schemas_dir=settings.resource_dir("schemas"),
            replication_factor=settings.topic_replication_factor,
            extra_folders=settings.extra_topic_dirs,
            extra_schema_dirs=settings.extra_schema_dirs,
        ),
    )


_LOADED: FolderCache[Topology] = FolderCache()


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
    topic = parse_definition(raw, where)
    if topic.name != path.stem:
        raise TopologyError(
            f"{where}: name {topic.name!r} must match the file name ({topic.name}.yaml)"
        )
    return topic


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

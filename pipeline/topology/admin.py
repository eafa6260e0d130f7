"""The Admin API side of the topic definitions: read a cluster, plan, apply, check.

:func:`plan` reads what the cluster holds of the defined topics and compares it with
the definitions (:mod:`pipeline.topology.drift`); :func:`apply` fixes the safe drifts
(create missing topics, add partitions, set configs) and refuses, before changing
anything, to shrink partitions or change ``cleanup.policy``; :func:`check` only reports.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, cast

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
from pipeline.topology.definitions import TopicDefinition, Topology
from pipeline.topology.drift import ClusterState, Drift, DriftKind, Plan, compare

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "admin_client", "apply", "check", "plan"]

DEFAULT_TIMEOUT_SECONDS = 30.0


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
    """Read the cluster and compare it with ``topology``.

    Physical names come from ``settings.topic``; only the configs a definition names are
    compared; ``settings.topic_replication_factor`` overrides the definitions' replication
    factors (see :func:`pipeline.topology.drift.compare`).
    """
    cluster = _read_cluster(admin, [settings.topic(t.name) for t in topology], timeout)
    return compare(topology, settings, cluster)


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


def _read_cluster(admin: AdminClient, topics: Iterable[str], timeout: float) -> ClusterState:
    """What the cluster holds of ``topics``: partitions, replication and configs."""
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
    return ClusterState(
        partitions={name: len(meta.partitions) for name, meta in found.items()},
        replication={
            name: min((len(p.replicas) for p in meta.partitions.values()), default=0)
            for name, meta in found.items()
        },
        configs=_describe_configs(admin, sorted(found), timeout),
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

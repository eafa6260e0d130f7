"""Drift planning against a snapshot of the cluster (no broker): what apply would do."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.config import Settings
from pipeline.topology import ClusterState, DriftKind, TopicDefinition, Topology, compare

SETTINGS = Settings(topic_prefix="p_")


def _topology(partitions: int = 4) -> Topology:
    return Topology(
        (
            TopicDefinition(
                name="a",
                kind="conversation",
                partitions=partitions,
                replication_factor=3,
                key="conversation_id",
                doc="a events.",
                value_schema="pipeline.events.MessageReceived",
                configs={"cleanup.policy": "delete", "retention.ms": "1000"},
            ),
            TopicDefinition(
                name="state",
                kind="changelog",
                partitions=partitions,
                replication_factor=3,
                key="conversation_id",
                doc="state.",
                co_partitioned=True,
                configs={"cleanup.policy": "compact,delete"},
            ),
        )
    )


def _cluster(
    partitions: int = 4,
    replication: int = 3,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    topics: tuple[str, ...] = ("p_a", "p_state"),
) -> ClusterState:
    configs = configs or {
        "p_a": {"cleanup.policy": "delete", "retention.ms": "1000", "segment.ms": "9"},
        "p_state": {"cleanup.policy": "delete,compact"},
    }
    return ClusterState(
        partitions={name: partitions for name in topics},
        replication={name: replication for name in topics},
        configs={name: configs[name] for name in topics},
        brokers=3,
    )


def test_a_cluster_that_matches_has_no_drift() -> None:
    # Configs the definition does not name are not compared; cleanup.policy is a set.
    plan = compare(_topology(), SETTINGS, _cluster())
    assert not plan
    assert plan.brokers == 3


def test_missing_topics_are_changes_under_their_physical_names() -> None:
    plan = compare(_topology(), SETTINGS, _cluster(topics=("p_state",)))
    assert [(d.topic, d.kind) for d in plan.changes] == [("p_a", DriftKind.MISSING_TOPIC)]
    assert plan.changes[0].wanted == "4 partitions, replication 3"
    assert plan.unsafe == () and plan.left_alone == ()


def test_more_partitions_is_a_change_and_fewer_is_refused() -> None:
    grow = compare(_topology(partitions=6), SETTINGS, _cluster(partitions=4))
    assert {(d.kind, d.current, d.wanted) for d in grow.changes} == {
        (DriftKind.PARTITION_MISMATCH, "4", "6")
    }
    assert len(grow.changes) == 2 and not grow.unsafe

    shrink = compare(_topology(partitions=2), SETTINGS, _cluster(partitions=4))
    assert shrink.changes == ()
    assert len(shrink.unsafe) == 2
    assert "Kafka cannot remove partitions" in (shrink.unsafe[0].unsafe or "")


def test_a_changed_cleanup_policy_is_refused_and_another_config_is_a_change() -> None:
    cluster = _cluster(
        configs={
            "p_a": {"cleanup.policy": "compact", "retention.ms": "5"},
            "p_state": {"cleanup.policy": "compact,delete"},
        }
    )
    plan = compare(_topology(), SETTINGS, cluster)
    assert [(d.config, d.current, d.wanted) for d in plan.unsafe] == [
        ("cleanup.policy", "compact", "delete")
    ]
    assert [(d.config, d.current, d.wanted) for d in plan.changes] == [
        ("retention.ms", "5", "1000")
    ]


def test_a_config_the_topic_lacks_is_a_change() -> None:
    cluster = _cluster(configs={"p_a": {"cleanup.policy": "delete"}, "p_state": {}})
    plan = compare(_topology(), SETTINGS, cluster)
    assert {(d.topic, d.config, d.current) for d in plan.changes} == {
        ("p_a", "retention.ms", None),
        ("p_state", "cleanup.policy", None),
    }
    assert not plan.unsafe


def test_replication_is_left_alone_and_the_settings_override_counts() -> None:
    plan = compare(_topology(), SETTINGS, _cluster(replication=1))
    assert {d.kind for d in plan.left_alone} == {DriftKind.REPLICATION_MISMATCH}
    assert plan.changes == () and plan.unsafe == ()
    assert "PIPELINE_TOPIC_REPLICATION_FACTOR=1" in plan.left_alone[0].advice()

    overridden = Settings(topic_prefix="p_", topic_replication_factor=1)
    assert not compare(_topology(), overridden, _cluster(replication=1))

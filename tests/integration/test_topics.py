"""Applying and checking topic definitions against a real Kafka broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from pipeline.cli.topics import topics as topics_cli
from pipeline.config import Settings, bundled_dir
from pipeline.dev.kafka import create_topics
from pipeline.errors import UnsafeTopicChangeError
from pipeline.topology import (
    DriftKind,
    admin_client,
    apply,
    check,
    load_settings_topology,
)

pytestmark = pytest.mark.integration

TIMEOUT = 30.0


def _definitions(
    partitions: int = 2,
    *,
    retention_ms: str = "3600000",
    state_policy: str = "compact",
) -> list[dict[str, object]]:
    """A small topology: two conversation topics and a co-partitioned changelog."""
    conversation = [
        {
            "name": name,
            "kind": "conversation",
            "doc": f"{name} events.",
            "partitions": partitions,
            "replication_factor": 3,
            "key": "conversation_id",
            "value_schema": schema,
            "configs": {
                "cleanup.policy": "delete",
                "retention.ms": retention_ms,
                "min.insync.replicas": "2",
            },
        }
        for name, schema in [
            ("message_received", "pipeline.events.MessageReceived"),
            ("response_ready", "pipeline.events.ResponseReady"),
        ]
    ]
    state = {
        "name": "agent_state_changelog",
        "kind": "changelog",
        "doc": "Agent state.",
        "co_partitioned": True,
        "partitions": partitions,
        "replication_factor": 3,
        "key": "conversation_id",
        "value_schema": None,
        "configs": {"cleanup.policy": state_policy, "min.insync.replicas": "2"},
    }
    return [*conversation, state]


def _write(folder: Path, definitions: list[dict[str, object]]) -> None:
    folder.mkdir(exist_ok=True)
    for definition in definitions:
        (folder / f"{definition['name']}.yaml").write_text(yaml.safe_dump(definition))


@pytest.fixture
def topics_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "topics"
    _write(folder, _definitions())
    return folder


@pytest.fixture
def settings(kafka_bootstrap: str, topics_dir: Path) -> Settings:
    return Settings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"topo-{uuid.uuid4().hex[:8]}.",
        topic_replication_factor=1,
        topics_dir=topics_dir,
        schemas_dir=bundled_dir("schemas"),
    )


@pytest.fixture
def cluster(settings: Settings) -> Iterator[AdminClient]:
    client = admin_client(settings)
    yield client
    ours = [
        t for t in client.list_topics(timeout=TIMEOUT).topics if t.startswith(settings.topic_prefix)
    ]
    if ours:
        for future in client.delete_topics(ours, operation_timeout=TIMEOUT).values():
            future.result(timeout=TIMEOUT)


def _cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {
        "PIPELINE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "PIPELINE_TOPIC_PREFIX": settings.topic_prefix,
        "PIPELINE_TOPIC_REPLICATION_FACTOR": str(settings.topic_replication_factor),
        "PIPELINE_TOPICS_DIR": str(settings.topics_dir),
        "PIPELINE_SCHEMAS_DIR": str(settings.schemas_dir),
    }
    result = CliRunner().invoke(topics_cli, list(args), env=env)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def _partitions(cluster: AdminClient, topic: str) -> int:
    return len(cluster.list_topics(topic, timeout=TIMEOUT).topics[topic].partitions)


def _config(cluster: AdminClient, topic: str, name: str) -> str:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = cluster.describe_configs([resource])[resource].result(timeout=TIMEOUT)
    value: str = entries[name].value
    return value


def _wait_for_config(cluster: AdminClient, topic: str, name: str, value: str) -> None:
    """The alter future completes before every broker's metadata shows the change."""
    deadline = time.monotonic() + TIMEOUT
    while _config(cluster, topic, name) != value:
        assert time.monotonic() < deadline, f"{topic} never showed {name}={value}"
        time.sleep(0.1)


def test_apply_creates_everything_and_a_second_apply_changes_nothing(
    cluster: AdminClient, settings: Settings
) -> None:
    topology = load_settings_topology(settings)
    before = check(cluster, topology, settings)
    assert {d.kind for d in before} == {DriftKind.MISSING_TOPIC}
    assert len(before) == 3

    created = apply(cluster, topology, settings, timeout=TIMEOUT)
    assert sorted(d.topic for d in created) == sorted(settings.topic(n) for n in topology.names)

    for name in topology.names:
        physical = settings.topic(name)
        assert _partitions(cluster, physical) == 2
        assert _config(cluster, physical, "min.insync.replicas") == "1"  # capped by override
    state = settings.topic("agent_state_changelog")
    assert _config(cluster, state, "cleanup.policy") == "compact"
    assert _config(cluster, settings.topic("message_received"), "retention.ms") == "3600000"

    assert apply(cluster, topology, settings, timeout=TIMEOUT) == []
    assert check(cluster, topology, settings) == []

    code, out, _ = _cli(settings, "apply")
    assert (code, out.strip()) == (0, "no changes")
    code, out, _ = _cli(settings, "check")
    assert code == 0


def test_check_reports_a_config_altered_behind_its_back(
    cluster: AdminClient, settings: Settings
) -> None:
    topology = load_settings_topology(settings)
    apply(cluster, topology, settings, timeout=TIMEOUT)
    topic = settings.topic("response_ready")
    altered = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in cluster.incremental_alter_configs([altered]).values():
        future.result(timeout=TIMEOUT)
    _wait_for_config(cluster, topic, "retention.ms", "60000")

    drifts = check(cluster, topology, settings)
    assert len(drifts) == 1
    drift = drifts[0]
    assert (drift.topic, drift.kind, drift.config) == (
        topic,
        DriftKind.CONFIG_MISMATCH,
        "retention.ms",
    )
    assert (drift.current, drift.wanted, drift.unsafe) == ("60000", "3600000", None)

    code, out, _ = _cli(settings, "check")
    assert code == 1
    assert f"{topic}: retention.ms is 60000, wanted 3600000" in out

    code, out, _ = _cli(settings, "apply")
    assert code == 0
    assert f"set retention.ms on {topic}: 60000 -> 3600000" in out
    assert _config(cluster, topic, "retention.ms") == "3600000"
    assert _cli(settings, "check")[0] == 0


def test_check_and_cli_report_missing_topics(cluster: AdminClient, settings: Settings) -> None:
    code, out, _ = _cli(settings, "check")
    assert code == 1
    assert f"missing topic: {settings.topic('message_received')}: missing" in out


def test_partition_increase_is_applied_to_every_co_partitioned_topic(
    cluster: AdminClient, settings: Settings, topics_dir: Path
) -> None:
    apply(cluster, load_settings_topology(settings), settings, timeout=TIMEOUT)
    _write(topics_dir, _definitions(partitions=3))
    topology = load_settings_topology(settings)

    changes = apply(cluster, topology, settings, timeout=TIMEOUT)
    assert {d.kind for d in changes} == {DriftKind.PARTITION_MISMATCH}
    assert {(d.current, d.wanted) for d in changes} == {("2", "3")}
    for name in topology.names:
        assert _partitions(cluster, settings.topic(name)) == 3
    assert apply(cluster, topology, settings, timeout=TIMEOUT) == []


def test_shrinking_partitions_is_refused_and_nothing_changes(
    cluster: AdminClient, settings: Settings, topics_dir: Path
) -> None:
    apply(cluster, load_settings_topology(settings), settings, timeout=TIMEOUT)
    # Also a safe change (retention) in the same edit: it must not be applied either.
    _write(topics_dir, _definitions(partitions=1, retention_ms="7200000"))
    topology = load_settings_topology(settings)

    with pytest.raises(UnsafeTopicChangeError) as caught:
        apply(cluster, topology, settings, timeout=TIMEOUT)
    message = str(caught.value)
    topic = settings.topic("message_received")
    assert "nothing was changed" in message
    assert f"{topic} has 2 partitions and the definition wants 1" in message
    assert "cannot remove partitions" in message

    for name in topology.names:
        assert _partitions(cluster, settings.topic(name)) == 2
    assert _config(cluster, topic, "retention.ms") == "3600000"

    drifts = check(cluster, topology, settings)
    assert any(d.kind is DriftKind.PARTITION_MISMATCH and d.unsafe for d in drifts)

    code, out, err = _cli(settings, "apply")
    assert code == 2
    assert out == ""
    assert err.startswith("error: refusing to apply topic definitions")
    assert len(err.strip().splitlines()) == 1


def test_changing_cleanup_policy_is_refused(
    cluster: AdminClient, settings: Settings, topics_dir: Path
) -> None:
    apply(cluster, load_settings_topology(settings), settings, timeout=TIMEOUT)
    _write(topics_dir, _definitions(state_policy="delete"))
    topology = load_settings_topology(settings)

    with pytest.raises(UnsafeTopicChangeError) as caught:
        apply(cluster, topology, settings, timeout=TIMEOUT)
    topic = settings.topic("agent_state_changelog")
    assert f"{topic} has cleanup.policy=compact and the definition wants delete" in str(
        caught.value
    )
    assert _config(cluster, topic, "cleanup.policy") == "compact"

    code, out, _ = _cli(settings, "check")
    assert code == 1
    assert "cleanup.policy is compact, wanted delete (unsafe" in out


def test_apply_on_too_few_brokers_names_the_replication_override(
    cluster: AdminClient, settings: Settings
) -> None:
    """The shared broker is one node; the definitions want replication 3."""
    env_settings = settings.model_copy(update={"topic_replication_factor": None})
    env = {
        "PIPELINE_BOOTSTRAP_SERVERS": env_settings.bootstrap_servers,
        "PIPELINE_TOPIC_PREFIX": env_settings.topic_prefix,
        "PIPELINE_TOPICS_DIR": str(env_settings.topics_dir),
        "PIPELINE_SCHEMAS_DIR": str(env_settings.schemas_dir),
    }
    result = CliRunner().invoke(topics_cli, ["apply"], env=env)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert "topics want replication 3 but the cluster at" in line
    assert "has 1 broker(s): for development set PIPELINE_TOPIC_REPLICATION_FACTOR=1" in line
    assert not [
        t
        for t in cluster.list_topics(timeout=TIMEOUT).topics
        if t.startswith(settings.topic_prefix)
    ], "nothing is created"


def test_check_reports_replication_drift_unless_the_override_wants_it(
    cluster: AdminClient, settings: Settings
) -> None:
    assert _cli(settings, "apply")[0] == 0  # replication 1, as the override says
    assert _cli(settings, "check") == (0, "in sync\n", "")

    without = {
        "PIPELINE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "PIPELINE_TOPIC_PREFIX": settings.topic_prefix,
        "PIPELINE_TOPICS_DIR": str(settings.topics_dir),
        "PIPELINE_SCHEMAS_DIR": str(settings.schemas_dir),
    }
    result = CliRunner().invoke(topics_cli, ["check"], env=without)
    assert result.exit_code == 1
    topic = settings.topic("message_received")
    assert (
        f"replication mismatch: {topic}: replication is 1, wanted 3 (apply does not change "
        "replication" in result.stdout
    )
    assert "PIPELINE_TOPIC_REPLICATION_FACTOR=1 if that is what you want" in result.stdout


def test_the_dev_helper_creates_a_topic_named_twice_once(kafka_bootstrap: str) -> None:
    # Naming a topic twice in one Admin request crashes confluent-kafka's client.
    name = f"twice-{uuid.uuid4().hex[:8]}"
    assert create_topics(kafka_bootstrap, [name, name]) == [name]
    AdminClient({"bootstrap.servers": kafka_bootstrap}).delete_topics([name])

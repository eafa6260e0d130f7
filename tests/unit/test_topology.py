"""Loading and validating topic definitions (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli.topics import topics as topics_cli
from pipeline.config import Settings, bundled_dir
from pipeline.errors import TopologyError
from pipeline.topology import (
    Drift,
    DriftKind,
    TopicDefinition,
    admin_client,
    check,
    load_settings_topology,
    load_topology,
)
from tests.user_events import EVENT_TYPE, FULL_NAME, write_user_events

TOPICS = bundled_dir("topics")
SCHEMAS = bundled_dir("schemas")

CONVERSATION_TOPICS = {
    "message_received",
    "tool_called",
    "tool_result",
    "response_ready",
    "delivery_status",
    "webhook_received",
    "context_updated",
    "timer_requested",
    "timer_fired",
    "handoff_requested",
    "operator_message",
    "handoff_released",
    "approval_requested",
    "approval_decided",
    "tool_outcome_decided",
    "operator_action_handled",
    "web_outgoing",
    "response_delta",
    "history_summarized",
}


def _definition(name: str, **overrides: object) -> dict[str, object]:
    definition: dict[str, object] = {
        "name": name,
        "kind": "conversation",
        "doc": f"{name} events.",
        "partitions": 4,
        "replication_factor": 3,
        "key": "conversation_id",
        "value_schema": "pipeline.events.MessageReceived",
        "configs": {"cleanup.policy": "delete", "min.insync.replicas": "2"},
    }
    definition.update(overrides)
    return definition


def _write(folder: Path, *definitions: dict[str, object]) -> Path:
    folder.mkdir(exist_ok=True)
    for definition in definitions:
        (folder / f"{definition['name']}.yaml").write_text(yaml.safe_dump(definition))
    return folder


# --------------------------------------------------------------------------- bundled


def test_bundled_definitions_load_with_their_schemas() -> None:
    topology = load_topology(TOPICS, schemas_dir=SCHEMAS)

    conversation = {t.name for t in topology if t.kind == "conversation"}
    assert conversation == CONVERSATION_TOPICS
    assert set(topology.names) == CONVERSATION_TOPICS | {
        "dead_letters",
        "agent_state_changelog",
        "agent_journal",
        "tools_journal",
        "delivery_sent",
        "scheduler_timers",
        "webhook_deliveries",
        "tool_catalog",
        "dead_letter_redrives",
        "console_sessions",
    }
    assert topology.co_partition_count == 12


def test_bundled_conversation_topics_are_durable_and_keyed_by_conversation() -> None:
    topology = load_topology(TOPICS, schemas_dir=SCHEMAS)
    for name in CONVERSATION_TOPICS:
        topic = topology[name]
        assert topic.key == "conversation_id"
        assert topic.replication_factor == 3
        assert topic.configs["min.insync.replicas"] == "2"
        assert topic.configs["cleanup.policy"] == "delete"
        assert "retention.ms" in topic.configs
        assert topic.value_schema is not None
        assert (SCHEMAS / f"{topic.value_schema}.avsc").is_file()


def test_bundled_changelogs_are_compacted_and_state_is_co_partitioned() -> None:
    topology = load_topology(TOPICS, schemas_dir=SCHEMAS)
    state = topology["agent_state_changelog"]
    timers = topology["scheduler_timers"]
    deliveries = topology["webhook_deliveries"]
    assert deliveries.co_partitioned
    assert deliveries.partitions == topology["webhook_received"].partitions
    assert "compact" in deliveries.configs["cleanup.policy"]
    assert state.configs["cleanup.policy"] == "compact"
    assert state.co_partitioned
    assert state.partitions == topology["message_received"].partitions
    assert timers.configs["cleanup.policy"] == "compact"
    assert timers.key == "timer_id"
    dead_letters = topology["dead_letters"]
    assert dead_letters.kind == "internal"
    assert dead_letters.value_schema == "pipeline.events.DeadLetter"
    catalog = topology["tool_catalog"]
    assert (catalog.kind, catalog.key, catalog.configs["cleanup.policy"]) == (
        "internal",
        "tool_name",
        "compact",
    )
    assert catalog.value_schema == "pipeline.events.ToolAdvertised"
    redrives = topology["dead_letter_redrives"]
    # Never deleted: a redriven letter must stay redriven as long as it can be read.
    assert (redrives.key, redrives.configs["cleanup.policy"]) == ("dead_letter_id", "compact")
    assert "retention.ms" not in redrives.configs
    assert int(dead_letters.configs["retention.ms"]) > int(
        topology["message_received"].configs["retention.ms"]
    )


def test_definitions_are_frozen() -> None:
    topic = load_topology(TOPICS)["message_received"]
    with pytest.raises(AttributeError):
        topic.partitions = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        topic.configs["retention.ms"] = "1"  # type: ignore[index]


# --------------------------------------------------------------------------- validation


def test_loads_a_minimal_definition(tmp_path: Path) -> None:
    folder = _write(tmp_path / "t", _definition("a"), _definition("b"))
    topology = load_topology(folder, schemas_dir=SCHEMAS)
    assert topology.names == ("a", "b")
    assert topology["a"].partitions == 4
    assert topology["a"].co_partitioned  # conversation topics always are
    assert dict(topology["a"].configs) == {"cleanup.policy": "delete", "min.insync.replicas": "2"}


def test_unknown_key_is_rejected_with_the_file_name(tmp_path: Path) -> None:
    folder = _write(tmp_path / "t", _definition("a", partitons=3))
    with pytest.raises(TopologyError, match=r"a\.yaml: unknown key\(s\) partitons"):
        load_topology(folder)


def test_missing_key_is_rejected(tmp_path: Path) -> None:
    definition = _definition("a")
    del definition["key"]
    folder = _write(tmp_path / "t", definition)
    with pytest.raises(TopologyError, match=r"a\.yaml: missing key\(s\) key"):
        load_topology(folder)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"partitions": 0}, "partitions must be at least 1"),
        ({"partitions": True}, "partitions must be an integer"),
        ({"partitions": "12"}, "partitions must be an integer"),
        ({"replication_factor": 0}, "replication_factor must be at least 1"),
        ({"kind": "stream"}, "kind 'stream' is not one of"),
        ({"configs": {"retention.ms": 1000}}, "must be a quoted string"),
        ({"configs": {"min.insync.replicas": "4"}}, "min.insync.replicas '4'"),
        ({"value_schema": "MessageReceived"}, "value_schema must be an Avro full name"),
        ({"value_schema": None}, "conversation topics need a value_schema"),
        ({"co_partitioned": False}, "always co-partitioned"),
    ],
)
def test_invalid_values_are_rejected(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    folder = _write(tmp_path / "t", _definition("a", **overrides))
    with pytest.raises(TopologyError, match=message) as caught:
        load_topology(folder)
    assert str(caught.value).startswith("a.yaml: ")


def test_name_must_match_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "b.yaml").write_text(yaml.safe_dump(_definition("a")))
    with pytest.raises(TopologyError, match=r"b\.yaml: name 'a' must match the file name"):
        load_topology(folder)


def test_file_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "a.yaml").write_text("- just\n- a list\n")
    with pytest.raises(TopologyError, match=r"a\.yaml: expected a mapping"):
        load_topology(folder)


def test_empty_or_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="does not exist"):
        load_topology(tmp_path / "nope")
    with pytest.raises(TopologyError, match="no topic definitions"):
        load_topology(tmp_path)


def test_mismatched_partition_counts_name_the_topics(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "t",
        _definition("a", partitions=4),
        _definition("b", partitions=4),
        _definition("c", partitions=6),
        _definition(
            "state",
            kind="changelog",
            co_partitioned=True,
            value_schema=None,
            partitions=8,
            configs={"cleanup.policy": "compact"},
        ),
    )
    with pytest.raises(TopologyError, match="share one partition count") as caught:
        load_topology(folder)
    assert "4: a, b" in str(caught.value)
    assert "6: c" in str(caught.value)
    assert "8: state" in str(caught.value)


def test_topics_outside_co_partitioning_may_differ(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "t",
        _definition("a", partitions=4),
        _definition("dead", kind="internal", partitions=1, value_schema=None),
        _definition("timers", kind="changelog", partitions=2, value_schema=None, key="timer_id"),
    )
    topology = load_topology(folder)
    assert topology.co_partition_count == 4
    assert topology["dead"].partitions == 1


def test_missing_schema_is_rejected(tmp_path: Path) -> None:
    folder = _write(tmp_path / "t", _definition("a", value_schema="pipeline.events.Nope"))
    load_topology(folder)  # no schemas folder: not checked
    with pytest.raises(TopologyError, match=r"a\.yaml: value_schema 'pipeline\.events\.Nope'"):
        load_topology(folder, schemas_dir=SCHEMAS)


# --------------------------------------------------------------------------- replication


def test_replication_override_replaces_factor_and_caps_min_insync(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "t",
        _definition("a"),
        _definition(
            "b",
            kind="internal",
            value_schema=None,
            configs={"cleanup.policy": "delete"},
        ),
    )
    one = load_topology(folder, replication_factor=1)
    assert one["a"].replication_factor == 1
    assert one["a"].configs["min.insync.replicas"] == "1"
    assert "min.insync.replicas" not in one["b"].configs

    five = load_topology(folder, replication_factor=5)
    assert five["a"].replication_factor == 5
    assert five["a"].configs["min.insync.replicas"] == "2"  # only ever capped


def test_settings_drive_folders_and_override(tmp_path: Path) -> None:
    folder = _write(tmp_path / "t", _definition("a"))
    settings = Settings(topics_dir=folder, schemas_dir=SCHEMAS, topic_replication_factor=1)
    topology = load_settings_topology(settings)
    assert topology["a"].replication_factor == 1
    assert topology["a"].configs["min.insync.replicas"] == "1"


def test_drift_describes_itself() -> None:
    missing = Drift("p_a", DriftKind.MISSING_TOPIC, wanted="4 partitions, replication 1")
    config = Drift(
        "p_a", DriftKind.CONFIG_MISMATCH, wanted="1000", current="2000", config="retention.ms"
    )
    assert str(missing) == "p_a: missing (wanted 4 partitions, replication 1)"
    assert str(config) == "p_a: retention.ms is 2000, wanted 1000"
    assert config.describe_change() == "set retention.ms on p_a: 2000 -> 1000"


# --------------------------------------------------------------------------- CLI


def test_cli_list_prints_physical_names_and_settings(tmp_path: Path) -> None:
    folder = _write(tmp_path / "t", _definition("a"))
    result = CliRunner().invoke(
        topics_cli,
        ["list", "--topics-dir", str(folder)],
        env={"PIPELINE_TOPIC_PREFIX": "dev_", "PIPELINE_TOPIC_REPLICATION_FACTOR": "1"},
    )
    assert result.exit_code == 0, result.output
    assert "dev_a" in result.output
    assert "partitions=4" in result.output
    assert "replication=1" in result.output
    assert "min.insync.replicas=1" in result.output


def test_cli_invalid_definitions_exit_2_with_one_line(tmp_path: Path) -> None:
    folder = _write(tmp_path / "t", _definition("a", bogus=1))
    result = CliRunner().invoke(topics_cli, ["list", "--topics-dir", str(folder)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert "a.yaml: unknown key(s) bogus" in result.stderr
    assert "Traceback" not in result.output


def test_unreachable_cluster_is_a_topology_error(tmp_path: Path) -> None:
    folder = _write(tmp_path / "t", _definition("a"))
    settings = Settings(bootstrap_servers="127.0.0.1:1", topics_dir=folder)
    topology = load_settings_topology(settings)
    with pytest.raises(TopologyError, match="cannot list topics"):
        check(admin_client(settings), topology, settings, timeout=1.0)

    result = CliRunner().invoke(
        topics_cli,
        ["check", "--topics-dir", str(folder), "--timeout", "1"],
        env={"PIPELINE_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot list topics")
    assert len(result.stderr.strip().splitlines()) == 1


def test_extra_folder_adds_topics_next_to_the_bundled_ones(tmp_path: Path) -> None:
    schemas, topics = write_user_events(tmp_path)
    settings = Settings(extra_schema_dirs=[schemas], extra_topic_dirs=[topics])
    topology = load_settings_topology(settings)
    assert set(load_topology(TOPICS).names) | {EVENT_TYPE} == set(topology.names)
    assert topology[EVENT_TYPE].value_schema == FULL_NAME


def test_a_topic_in_two_folders_names_both_files(tmp_path: Path) -> None:
    extra = _write(tmp_path / "mine", _definition("tool_called", partitions=12))
    with pytest.raises(TopologyError, match="'tool_called' is defined twice") as info:
        load_topology(TOPICS, extra_folders=[extra])
    assert str(TOPICS / "tool_called.yaml") in str(info.value)
    assert str(extra / "tool_called.yaml") in str(info.value)


def test_an_extra_topic_needs_its_schema_in_some_schema_folder(tmp_path: Path) -> None:
    _, topics = write_user_events(tmp_path)
    with pytest.raises(TopologyError, match=r"value_schema 'acme\.shop\.OrderPlaced' not found"):
        load_topology(TOPICS, schemas_dir=SCHEMAS, extra_folders=[topics])


def test_an_extra_conversation_topic_must_share_the_partition_count(tmp_path: Path) -> None:
    extra = _write(tmp_path / "mine", _definition("order_placed", partitions=5))
    with pytest.raises(TopologyError, match="must share one partition count"):
        load_topology(TOPICS, extra_folders=[extra])


def test_every_problem_of_a_file_is_named_at_once(tmp_path: Path) -> None:
    definition = _definition("a", partitions=0, kind="stream", bogus=1)
    del definition["doc"]
    folder = _write(tmp_path / "t", definition)
    with pytest.raises(TopologyError) as caught:
        load_topology(folder)
    message = str(caught.value)
    assert message.startswith("a.yaml: unknown key(s) bogus")
    for problem in ("missing key(s) doc", "kind 'stream' is not one of", "partitions must be at"):
        assert problem in message
    assert "\n" not in message


def test_a_definition_left_without_co_partitioned_follows_its_kind(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "t",
        _definition("a"),
        _definition("dead", kind="internal", value_schema=None, partitions=1),
    )
    topology = load_topology(folder)
    assert topology["a"].co_partitioned
    assert not topology["dead"].co_partitioned
    # An explicit null is not "left out": it is a mistake in the file.
    _write(folder, _definition("dead", kind="internal", value_schema=None, co_partitioned=None))
    with pytest.raises(TopologyError, match=r"dead\.yaml: co_partitioned must be true or false"):
        load_topology(folder)


def test_a_definition_built_in_code_is_validated_too() -> None:
    with pytest.raises(ValueError, match="conversation topics need a value_schema"):
        TopicDefinition(
            name="a", kind="conversation", partitions=1, replication_factor=1, key="k", doc="d"
        )

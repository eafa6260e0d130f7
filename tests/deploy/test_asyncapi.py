"""`pipeline asyncapi` against the official AsyncAPI 3.0.0 JSON Schema (@asyncapi/specs).

The schema comes from the npm package that `.ci/deploy-tools` installs; the document is
the one the command line writes, read back as YAML.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

import fastavro
import jsonschema
import pytest
import yaml

from pipeline.config import Settings
from pipeline.events.catalog import (
    SchemaCatalog,
    event_type_of,
    fingerprint,
    load_named_schema,
)
from pipeline.topology import load_settings_topology
from tests.deploy.deploy_support import REPO, tools_dir
from tests.environment import skip_or_fail


def _specs_schema() -> dict[str, Any]:
    path = tools_dir().parent / "asyncapi/node_modules/@asyncapi/specs/schemas/3.0.0.json"
    if not path.is_file():
        skip_or_fail(f"{path} is missing: .ci/deploy-tools installs @asyncapi/specs")
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_specs_schema())


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("asyncapi") / "asyncapi.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "asyncapi", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = yaml.safe_load(out.read_text())
    return doc


def _errors(validator: jsonschema.Draft7Validator, doc: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator.iter_errors(doc)
    ]


def test_document_validates_against_the_official_schema(
    validator: jsonschema.Draft7Validator, document: dict[str, Any]
) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert _errors(validator, document) == []


def test_the_validator_refuses_a_broken_document(
    validator: jsonschema.Draft7Validator, document: dict[str, Any]
) -> None:
    """The check above can fail: a zero partition count and a bad Avro type are caught."""
    bad = copy.deepcopy(document)
    bad["channels"]["tool_called"]["bindings"]["kafka"]["partitions"] = 0
    assert _errors(validator, bad)
    bad = copy.deepcopy(document)
    bad["components"]["messages"]["ToolCalled"]["payload"]["schema"]["type"] = "recordx"
    assert _errors(validator, bad)


def test_every_topic_has_its_channel_and_schema(document: dict[str, Any]) -> None:
    settings = Settings()
    topology = load_settings_topology(settings)
    catalog = SchemaCatalog.load(settings.resource_dir("schemas"))
    channels = document["channels"]
    assert sorted(channels) == sorted(topology.names)
    for topic in topology:
        binding = channels[topic.name]["bindings"]["kafka"]
        assert binding["partitions"] == topic.partitions
        assert binding["replicas"] == topic.replication_factor
        if topic.value_schema is None:
            assert channels[topic.name]["messages"] == {}
            continue
        (ref,) = channels[topic.name]["messages"].values()
        message = document["components"]["messages"][ref["$ref"].rsplit("/", 1)[-1]]
        # The published Avro schema is the catalog's, to the fingerprint.
        published = fastavro.parse_schema(message["payload"]["schema"], named_schemas={})
        assert fingerprint(published) == fingerprint(
            load_named_schema(settings, topic.value_schema)
        )
        if topic.kind == "conversation":
            known = catalog.reader(event_type_of(topic.value_schema))
            assert fingerprint(published) == known.fingerprint
        assert set(message["headers"]["properties"]) == {
            "event-type",
            "event-id",
            "content-type",
            "traceparent",
        }


def test_operations_name_who_sends_and_receives(document: dict[str, Any]) -> None:
    operations = document["operations"]
    for operation in operations.values():
        target = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert target in document["channels"]
    assert operations["gateway.send.message_received"]["action"] == "send"
    assert operations["agent.receive.message_received"]["action"] == "receive"
    assert operations["tools.receive.tool_called"]["action"] == "receive"
    assert operations["agent.send.response_ready"]["action"] == "send"
    assert operations["tools.send.tool_result"]["action"] == "send"
    assert operations["delivery.receive.response_ready"]["action"] == "receive"
    assert "scheduler.receive.timer_requested" in operations
    assert "webhooks.receive.webhook_received" in operations
    # Handoff and approvals: the agent writes the requests and reads the operators' events.
    for sent in ("handoff_requested", "approval_requested"):
        assert operations[f"agent.send.{sent}"]["action"] == "send"
    for received in (
        "operator_message",
        "handoff_released",
        "approval_decided",
        "tool_outcome_decided",
    ):
        assert operations[f"agent.receive.{received}"]["action"] == "receive"

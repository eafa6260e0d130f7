"""``pipeline produce`` refuses a bad body with status 2 before it contacts any broker."""

from __future__ import annotations

import json
import time
from typing import ClassVar

import confluent_kafka
import pytest
from click.testing import CliRunner, Result

from pipeline.cli import main
from pipeline.config import bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.serde import SingleObjectSerde

CLOSED_PORT = "127.0.0.1:1"
GOOD_SLACK_REPLY_TO = '{"channel": "slack", "address": "C024BE91L", "thread_id": null}'


class NoProducer:
    """Stands in for confluent_kafka.Producer: building one is the failure under test."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("produce built a Producer for a body it should have refused")


@pytest.fixture(autouse=True)
def no_broker(no_pipeline_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_BOOTSTRAP_SERVERS", CLOSED_PORT)
    monkeypatch.setattr(confluent_kafka, "Producer", NoProducer)


def produce(*args: str, stdin: str | None = None) -> Result:
    started = time.monotonic()
    result = CliRunner().invoke(
        main, ["produce", *args, "-c", "conv-1", "--timeout", "30"], input=stdin
    )
    assert time.monotonic() - started < 5, "produce waited for a broker"
    return result


def test_invalid_json_exits_2() -> None:
    result = produce("message_received", "{text: hi}")
    assert result.exit_code == 2, result.output
    assert "BODY is not valid JSON" in result.output


def test_invalid_json_on_stdin_exits_2() -> None:
    result = produce("message_received", "-", stdin="not json at all")
    assert result.exit_code == 2, result.output
    assert "BODY is not valid JSON" in result.output


def test_non_object_body_exits_2() -> None:
    result = produce("message_received", '["hello"]')
    assert result.exit_code == 2, result.output
    assert "BODY must be a JSON object" in result.output


def test_missing_field_exits_2_and_names_it() -> None:
    body = '{"channel": "slack", "sender_id": "U1", "reply_to": ' + GOOD_SLACK_REPLY_TO + "}"
    result = produce("message_received", body)
    assert result.exit_code == 2, result.output
    assert "error: message_received: 1 problem(s) in BODY, nothing produced" in result.stderr
    assert "  text: missing (required, string)" in result.stderr
    assert result.stdout == ""


def test_wrong_field_type_exits_2_and_names_it() -> None:
    body = '{"call_id": "c1", "tool": "search", "arguments_json": "{}", "timeout_ms": "soon"}'
    result = produce("tool_called", body)
    assert result.exit_code == 2, result.output
    assert "timeout_ms: expected int, got a string ('soon')" in result.stderr


def test_unknown_enum_symbol_exits_2() -> None:
    body = (
        '{"channel": "fax", "sender_id": "U1", "text": "hi", "reply_to": '
        + GOOD_SLACK_REPLY_TO
        + "}"
    )
    result = produce("message_received", body)
    assert result.exit_code == 2, result.output
    assert "channel: 'fax' is not one of web, slack," in result.stderr


def test_every_problem_is_reported_at_once_naming_the_field() -> None:
    body = {
        "channel": "slack",
        "sender": "U1",
        "text": 42,
        "reply_to": {"channel": "pigeon", "thread_id": None},
        "attachments": [{"url": "https://x/y.png", "content_type": "image/png", "size": 1}],
    }
    result = produce("message_received", json.dumps(body))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    problems = result.stderr.splitlines()[1:]
    assert problems == [
        "  sender: unknown field (known: attachments, attributes, channel, external_id, "
        "reply_to, sender_id, sender_name, text)",
        "  sender_id: missing (required, string)",
        "  text: expected string, got a number (42)",
        "  reply_to.channel: 'pigeon' is not one of web, slack, whatsapp, email, sms, voice, "
        "api, unknown",
        "  reply_to.address: missing (required, string)",
        "  attachments[0].size: unknown field (known: content_type, name, size_bytes, url)",
    ]
    assert "6 problem(s) in BODY" in result.stderr


def test_an_unknown_field_alone_is_refused() -> None:
    body = {
        "channel": "slack",
        "sender_id": "U1",
        "text": "hi",
        "reply_to": json.loads(GOOD_SLACK_REPLY_TO),
        "priority": "high",
    }
    result = produce("message_received", json.dumps(body))
    assert result.exit_code == 2, result.output
    assert "  priority: unknown field (known: " in result.stderr


def test_metadata_in_the_body_is_refused() -> None:
    body = '{"metadata": {}, "call_id": "c1", "tool": "t", "arguments_json": "{}"}'
    result = produce("tool_called", body)
    assert result.exit_code == 2, result.output
    assert "metadata: set by the producer" in result.stderr


def test_unknown_event_type_exits_2_and_lists_the_known_ones() -> None:
    result = produce("order_placed", "{}")
    assert result.exit_code == 2, result.output
    assert "unknown event type 'order_placed'" in result.stderr
    assert "message_received" in result.stderr


class RecordingProducer:
    """Accepts the record without a broker, so the test sees what would be produced."""

    produced: ClassVar[list[dict[str, object]]] = []

    def __init__(self, config: dict[str, object]) -> None:
        self.config = config

    def produce(self, topic: str, **kwargs: object) -> None:
        self.produced.append({"topic": topic, "bootstrap": self.config["bootstrap.servers"]})
        self.produced[-1].update(kwargs)

    def flush(self, timeout: float) -> int:
        return 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> object:
        return object()  # the cluster answers

    def poll(self, timeout: float = -1) -> int:
        return 0


def test_valid_body_reaches_the_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    RecordingProducer.produced = []
    monkeypatch.setattr(confluent_kafka, "Producer", RecordingProducer)
    monkeypatch.setenv("PIPELINE_TOPIC_PREFIX", "t-cli.")
    body = (
        '{"channel": "slack", "sender_id": "U1", "text": "hi", "reply_to": '
        + GOOD_SLACK_REPLY_TO
        + "}"
    )
    result = produce("message_received", body)
    assert result.exit_code == 0, result.output
    (record,) = RecordingProducer.produced
    assert record["topic"] == "t-cli.message_received"
    assert record["bootstrap"] == CLOSED_PORT
    assert record["key"] == "conv-1"
    value = record["value"]
    assert isinstance(value, bytes)
    event = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas"))).decode(value)
    assert event["text"] == "hi"
    assert event.metadata.tenant_id == "default"
    assert str(event.id) in result.stdout

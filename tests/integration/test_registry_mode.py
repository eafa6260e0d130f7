"""The agent and the tools service in the Confluent wire format, on a real broker.

Events go in through confluent-kafka's ``AvroSerializer`` and come out through its
``AvroDeserializer``. The registry is tests/registry_stand_in.py, which speaks the
registry's REST API over real HTTP but is NOT a real schema registry (none can be started
on this machine; see that module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from pipeline.events.catalog import schema_text
from pipeline.events.registry_serde import CONTENT_TYPE, frame
from pipeline.events.wire import make_serde
from pipeline.services import tools
from pipeline.services.agent import build
from tests.integration.runtime_support import Record, message, read_all_async, running, settings_for
from tests.registry_stand_in import StandInRegistry

TOPICS = (
    "message_received",
    "tool_called",
    "tool_result",
    "response_ready",
    "timer_requested",
    "timer_fired",
    "tool_catalog",
    "context_updated",
    "agent_state_changelog",
    "response_delta",
    "history_summarized",
    "dead_letters",
    "tools_journal",
)


@pytest.fixture(scope="module")
def registry() -> Iterator[StandInRegistry]:
    with StandInRegistry() as running_registry:
        yield running_registry


def read_with_deserializer(
    registry: StandInRegistry, topic: str, records: list[Record]
) -> list[dict[str, Any]]:
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry.url}))
    context = SerializationContext(topic, MessageField.VALUE)
    decoded = [
        deserializer(r.value, context)
        for r in sorted(records, key=lambda r: (r.partition, r.offset))
    ]
    return [d for d in decoded if d is not None]


async def test_a_calculator_turn_in_the_confluent_wire_format(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    registry: StandInRegistry,
) -> None:
    make_topics(*TOPICS, partitions=2)
    settings = settings_for(
        kafka_bootstrap,
        topic_prefix,
        wire_format="confluent",
        schema_registry={"url": registry.url},
    )
    serde = make_serde(settings)
    client = SchemaRegistryClient({"url": registry.url})
    inbound = topic_prefix + "message_received"
    serializer = AvroSerializer(client, schema_text(serde.catalog.reader("message_received")))
    question = message("conv-sr", "what is 12*7?", external_id="ext-sr")
    record = {**question.data, "metadata": question.metadata.to_record()}
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    value = serializer(record, SerializationContext(inbound, MessageField.VALUE))
    assert value is not None and value[:1] == b"\x00"
    # A record with a schema id the registry never gave out: dead-lettered, not fatal.
    unknown = frame(4_000_000) + value[5:]
    producer.produce(inbound, unknown, "conv-unknown")
    producer.produce(inbound, value, "conv-sr")
    assert producer.flush(10) == 0

    async with running(build(settings)), running(tools.build(settings)):
        replies = await read_all_async(
            kafka_bootstrap, topic_prefix + "response_ready", lambda r: len(r) >= 1, 60
        )
        letters = await read_all_async(
            kafka_bootstrap, topic_prefix + "dead_letters", lambda r: len(r) >= 1, 30
        )
    (answer,) = read_with_deserializer(registry, topic_prefix + "response_ready", replies)
    assert answer["text"] == "12*7 = 84"
    assert answer["in_reply_to"] == "ext-sr"
    assert str(answer["metadata"]["correlation_id"]) == question.metadata.event_id_text
    (reply,) = replies
    assert reply.value[:1] == b"\x00"
    assert ("content-type", CONTENT_TYPE.encode()) in reply.headers
    assert serde.decode(reply.value).data["text"] == "12*7 = 84"

    calls = await read_all_async(
        kafka_bootstrap, topic_prefix + "tool_called", lambda r: len(r) >= 1, 10
    )
    (called,) = read_with_deserializer(registry, topic_prefix + "tool_called", calls)
    assert called["tool"] == "calculator"

    (letter,) = read_with_deserializer(registry, topic_prefix + "dead_letters", letters)
    assert "4000000 is not in the schema registry" in letter["error_message"]
    assert letter["error_type"] == "UnknownSchemaError"
    assert letter["value"] == unknown
    # The tool catalog too: in the registry's format under its own subject, with headers.
    catalog = await read_all_async(
        kafka_bootstrap, topic_prefix + "tool_catalog", lambda r: len(r) >= 1, 10
    )
    advertised = read_with_deserializer(registry, topic_prefix + "tool_catalog", catalog)
    assert "calculator" in {tool["name"] for tool in advertised}
    for entry in catalog:
        assert entry.value[:1] == b"\x00"
        assert ("content-type", CONTENT_TYPE.encode()) in entry.headers
        assert ("event-type", b"tool_advertised") in entry.headers
    subjects = registry.state.subjects
    assert f"{topic_prefix}tool_catalog-value" in subjects
    assert f"{topic_prefix}response_ready-value" in subjects
    assert registry.state.compatibility[f"{topic_prefix}response_ready-value"] == "BACKWARD"

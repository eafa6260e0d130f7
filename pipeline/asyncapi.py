"""An AsyncAPI 3 document of the topics, generated from ``topics/`` and ``schemas/``.

One channel per topic (its Kafka binding: partitions, replicas, the configs a reader
cares about), one message per event type (its Avro schema as a multi-format schema
object, the record headers and the key), and one operation per service and topic: a
service ``receive``s the topics it has handlers for and ``send``s the ones it declares
it emits, plus the dead-letter topic every consuming service writes to. The gateway
sends what its HTTP routes produce.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pipeline.config import Settings
from pipeline.events.catalog import load_named_schema
from pipeline.events.serde import CONTENT_TYPE
from pipeline.runtime import headers
from pipeline.runtime.service import Service
from pipeline.services import BUILT_IN, load_service
from pipeline.services.gateway.ingest import TOPICS as GATEWAY_TOPICS
from pipeline.topology import TopicDefinition, Topology, load_settings_topology

ASYNCAPI_VERSION = "3.0.0"
AVRO_SCHEMA_FORMAT = "application/vnd.apache.avro;version=1.9.0"
KAFKA_BINDING_VERSION = "0.5.0"
DEAD_LETTERS_TOPIC = "dead_letters"
# Kafka binding 0.5.0 types these topic configs; the others pass through as strings.
_INTEGER_CONFIGS = frozenset(
    {"retention.ms", "retention.bytes", "delete.retention.ms", "max.message.bytes"}
)

_NAMED_TYPES = frozenset({"record", "enum", "fixed", "error"})

HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        headers.EVENT_TYPE: {
            "type": "string",
            "description": "The event type, e.g. message_received: also the topic's name.",
        },
        headers.EVENT_ID: {
            "type": "string",
            "format": "uuid",
            "description": "The event id, as in the metadata: consumers deduplicate by it.",
        },
        headers.CONTENT_TYPE: {
            "type": "string",
            "const": CONTENT_TYPE,
            "description": "The wire format of the value.",
        },
        headers.TRACEPARENT: {
            "type": "string",
            "description": "W3C Trace Context of the turn the event belongs to.",
        },
    },
}


@dataclass(frozen=True, slots=True)
class Roles:
    """What one service reads and writes, by logical topic name."""

    receives: tuple[str, ...] = ()
    sends: tuple[str, ...] = ()


def builtin_roles(settings: Settings) -> dict[str, Roles]:
    """Each built-in service's topics, read from the services themselves."""
    roles: dict[str, Roles] = {"gateway": Roles(sends=GATEWAY_TOPICS)}
    for name in sorted(BUILT_IN):
        if name in roles or name == "echo":
            continue
        service = load_service(name, settings)
        if isinstance(service, Service):
            receives = tuple(h.event_type for h in service.handlers)
            emits = service.emits or ()
            roles[name] = Roles(receives, (*emits, DEAD_LETTERS_TOPIC))
    return roles


def document(
    topology: Topology,
    schemas: Mapping[str, Any],
    roles: Mapping[str, Roles],
    *,
    bootstrap_servers: str = "localhost:9092",
    topic_prefix: str = "",
) -> dict[str, Any]:
    """The AsyncAPI 3 document as a JSON-ready dict; ``schemas`` maps each topic's value
    schema (full name) to the schema, references expanded."""
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    for topic in topology:
        channel: dict[str, Any] = {
            "address": f"{topic_prefix}{topic.name}",
            "title": topic.name,
            "description": topic.doc,
            "bindings": {"kafka": _channel_binding(topic, topic_prefix)},
        }
        message_name = _message_name(topic)
        if message_name is not None:
            if message_name not in messages:
                messages[message_name] = _message(topic, schemas[str(topic.value_schema)])
            channel["messages"] = {message_name: {"$ref": f"#/components/messages/{message_name}"}}
        else:
            channel["messages"] = {}
        channels[topic.name] = channel

    operations: dict[str, Any] = {}
    for service in sorted(roles):
        for action, names in (("receive", roles[service].receives), ("send", roles[service].sends)):
            for name in names:
                if name not in channels:
                    continue
                operation: dict[str, Any] = {
                    "action": action,
                    "title": f"{service} {action}s {name}",
                    "channel": {"$ref": f"#/channels/{name}"},
                    "tags": [{"name": service}],
                }
                if channels[name]["messages"]:
                    operation["messages"] = [
                        {"$ref": f"#/channels/{name}/messages/{message}"}
                        for message in channels[name]["messages"]
                    ]
                operations[f"{service}.{action}.{name}"] = operation

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "kafka-agent-pipeline events",
            "version": _package_version(),
            "description": (
                "The Kafka topics of the agent pipeline. Every event is keyed by its "
                "conversation id and Avro-encoded in single-object encoding (C3 01, the "
                "writer schema's CRC-64-AVRO fingerprint, the body); every event carries "
                "the same metadata record. All conversation topics share one partition "
                "count, so a conversation lives on the same partition number everywhere."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "kafka": {
                "host": bootstrap_servers,
                "protocol": "kafka",
                "description": "The Kafka cluster (PIPELINE_BOOTSTRAP_SERVERS).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def settings_document(settings: Settings) -> dict[str, Any]:
    """The document for the topics, schemas and services of ``settings``."""
    topology = load_settings_topology(settings)
    names = {t.value_schema for t in topology if t.value_schema is not None}
    return document(
        topology,
        {name: load_named_schema(settings, name) for name in sorted(names)},
        builtin_roles(settings),
        bootstrap_servers=settings.bootstrap_servers,
        topic_prefix=settings.topic_prefix,
    )


def _message_name(topic: TopicDefinition) -> str | None:
    if topic.value_schema is None:
        return None
    return topic.value_schema.rsplit(".", 1)[-1]


def _message(topic: TopicDefinition, value_schema: Any) -> dict[str, Any]:
    assert topic.value_schema is not None
    schema = _plain(value_schema)
    name = topic.value_schema.rsplit(".", 1)[-1]
    message: dict[str, Any] = {
        "name": name,
        "title": name,
        "contentType": CONTENT_TYPE,
        "headers": HEADERS_SCHEMA,
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": f"The {topic.key} (UTF-8).",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "summary": str(schema.get("doc", "")),
        "payload": {"schemaFormat": AVRO_SCHEMA_FORMAT, "schema": schema},
    }
    return message


def _channel_binding(topic: TopicDefinition, prefix: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, value in sorted(topic.configs.items()):
        if key == "cleanup.policy":
            config[key] = [part.strip() for part in value.split(",")]
        elif key in _INTEGER_CONFIGS:
            config[key] = int(value)
        else:
            config[key] = value
    return {
        "topic": f"{prefix}{topic.name}",
        "partitions": topic.partitions,
        "replicas": topic.replication_factor,
        "topicConfiguration": config,
        "bindingVersion": KAFKA_BINDING_VERSION,
    }


def _plain(value: Any) -> Any:
    """A fastavro-parsed schema without fastavro's bookkeeping keys, each full name of a
    named type split into ``namespace`` and ``name`` (the AsyncAPI Avro schema wants the
    name without dots; the two spellings mean the same to Avro)."""
    if isinstance(value, Mapping):
        plain = {k: _plain(v) for k, v in value.items() if not str(k).startswith("__")}
        kind = plain.get("type")
        if isinstance(kind, str) and kind in _NAMED_TYPES and "." in str(plain.get("name")):
            plain["namespace"], _, plain["name"] = str(plain["name"]).rpartition(".")
        return plain
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _package_version() -> str:
    try:
        return version("kafka-agent-pipeline")
    except PackageNotFoundError:
        return "0.0.0"

"""The Confluent wire format against confluent-kafka's own Avro serialiser and deserialiser.

The registry here is tests/registry_stand_in.py, a stand-in speaking the registry's REST
API over real HTTP (NOT a real registry: none can be started on this machine, see there).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from pipeline.config import Settings, bundled_dir
from pipeline.dev.kafka import free_port
from pipeline.errors import (
    CorruptEventError,
    RegistryUnavailableError,
    SchemaError,
    UnknownSchemaError,
)
from pipeline.events.catalog import DEAD_LETTER, SchemaCatalog, load_expanded, schema_text
from pipeline.events.model import Event, Metadata
from pipeline.events.registry_serde import CONTENT_TYPE, ConfluentSerde, frame
from pipeline.events.serde import SingleObjectSerde
from pipeline.events.wire import make_serde, registry_client_config
from tests.registry_stand_in import StandInRegistry
from tests.unit.events.test_serde import DEAD_LETTER_RECORD, FIELDS, metadata

PREFIX = "t1."
SCHEMAS = bundled_dir("schemas")


@pytest.fixture
def registry() -> Iterator[StandInRegistry]:
    with StandInRegistry() as running:
        yield running


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(
        wire_format="confluent",
        topic_prefix=PREFIX,
        schema_registry={"url": url, **overrides},
    )


@pytest.fixture
def serde(registry: StandInRegistry) -> ConfluentSerde:
    made = make_serde(settings_for(registry.url))
    assert isinstance(made, ConfluentSerde)
    return made


def client(registry: StandInRegistry) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry.url})


def context(event_type: str) -> SerializationContext:
    return SerializationContext(f"{PREFIX}{event_type}", MessageField.VALUE)


def sample(event_type: str = "message_received") -> Event:
    return Event(Metadata.from_record(metadata(event_type)), FIELDS[event_type])


def test_default_wire_format_stays_single_object() -> None:
    assert type(make_serde(Settings())) is SingleObjectSerde


def test_confluent_needs_a_registry_url() -> None:
    with pytest.raises(ValueError, match="PIPELINE_SCHEMA_REGISTRY__URL"):
        Settings(wire_format="confluent")


def test_registry_password_is_never_printed() -> None:
    settings = settings_for("http://127.0.0.1:1", username="key", password="s3cret-value")
    assert "s3cret-value" not in repr(settings)
    assert "s3cret-value" not in str(settings.model_dump())
    assert registry_client_config(settings)["basic.auth.user.info"] == "key:s3cret-value"


def test_every_schema_is_registered_under_its_topic_subject_with_backward(
    serde: ConfluentSerde, registry: StandInRegistry
) -> None:
    subjects = registry.state.subjects
    catalog = serde.catalog
    for event_type in catalog.event_types:
        subject = f"{PREFIX}{event_type}-value"
        assert subject in subjects, subject
        assert registry.state.compatibility[subject] == "BACKWARD"
        registered = json.loads(registry.state.schemas[subjects[subject][-1]])
        assert registered["name"] == catalog.reader(event_type).full_name
    assert f"{PREFIX}dead_letters-value" in subjects


def test_frame_is_magic_zero_then_big_endian_id_then_body(serde: ConfluentSerde) -> None:
    event = sample()
    data = serde.encode(event)
    schema_id = serde.schema_id("message_received")
    assert data[:5] == b"\x00" + schema_id.to_bytes(4, "big") == frame(schema_id)
    assert serde.decode(data) == event
    assert serde.content_type == CONTENT_TYPE != SingleObjectSerde.content_type


@pytest.mark.parametrize("event_type", sorted(FIELDS))
def test_avro_deserializer_reads_what_the_pipeline_writes(
    serde: ConfluentSerde, registry: StandInRegistry, event_type: str
) -> None:
    data = serde.encode(sample(event_type))
    record = AvroDeserializer(client(registry))(data, context(event_type))
    assert record is not None
    assert record["metadata"]["event_id"] == metadata(event_type)["event_id"]
    assert record["metadata"]["occurred_at"] == metadata(event_type)["occurred_at"]
    for name, value in FIELDS[event_type].items():
        if not isinstance(value, dict | list):
            assert record[name] == value, name


def test_avro_deserializer_reads_a_dead_letter(
    serde: ConfluentSerde, registry: StandInRegistry
) -> None:
    data = serde.encode_record(DEAD_LETTER, DEAD_LETTER_RECORD)
    read = AvroDeserializer(client(registry))(data, context("dead_letters"))
    assert read == DEAD_LETTER_RECORD
    assert serde.decode_record(data) == (DEAD_LETTER, DEAD_LETTER_RECORD)


def test_the_pipeline_reads_what_avro_serializer_writes(registry: StandInRegistry) -> None:
    serde = make_serde(settings_for(registry.url), register=False)  # a reader that never wrote
    text = schema_text(SchemaCatalog.load(SCHEMAS).reader("message_received"))
    serializer = AvroSerializer(client(registry), text)
    data = serializer(
        {"metadata": metadata("message_received"), **FIELDS["message_received"]},
        context("message_received"),
    )
    assert data is not None and data[:1] == b"\x00"
    event = serde.decode(data)
    assert event == sample("message_received")


def test_an_older_writer_version_resolves_onto_the_reader(registry: StandInRegistry) -> None:
    """A producer still on v1 (no ``external_id``) writes; a v2 reader reads the default."""
    serde = make_serde(settings_for(registry.url))
    v2 = load_expanded(SCHEMAS)["pipeline.events.MessageReceived"]
    v1 = copy.deepcopy(v2)
    v1["fields"] = [f for f in v1["fields"] if f["name"] != "external_id"]
    writer = AvroSerializer(client(registry), json.dumps(v1), conf={"auto.register.schemas": False})
    # v1 is older: a registry with BACKWARD would refuse it after v2, so it lives under
    # another subject, as an old producer's record with a different id would.
    client(registry).register_schema("old-producer-value", Schema(json.dumps(v1), "AVRO"))
    record = {"metadata": metadata("message_received"), **FIELDS["message_received"]}
    del record["external_id"]
    data = writer(record, SerializationContext("old-producer", MessageField.VALUE))
    assert data is not None
    assert int.from_bytes(data[1:5], "big") != serde.schema_id("message_received")
    event = serde.decode(data)
    assert event.data["external_id"] is None
    assert event.data["text"] == FIELDS["message_received"]["text"]


def test_writer_schemas_are_looked_up_once(
    serde: ConfluentSerde, registry: StandInRegistry
) -> None:
    reader = make_serde(settings_for(registry.url), register=False)
    data = serde.encode(sample())
    before = registry.state.requests
    for _ in range(5):
        reader.decode(data)
    assert registry.state.requests - before == 1


def test_an_unknown_schema_id_is_an_unknown_schema(serde: ConfluentSerde) -> None:
    data = frame(987654) + serde.encode(sample())[5:]
    with pytest.raises(UnknownSchemaError, match="987654 is not in the schema registry"):
        serde.decode(data)


def test_single_object_bytes_are_corrupt_here(serde: ConfluentSerde) -> None:
    single = SingleObjectSerde(serde.catalog).encode(sample())
    with pytest.raises(CorruptEventError, match="magic byte 00"):
        serde.decode(single)


def test_an_unreachable_registry_fails_the_record_then_fails_fast() -> None:
    now = [100.0]
    catalog = SchemaCatalog.load(SCHEMAS)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    serde = ConfluentSerde(
        catalog,
        SchemaRegistryClient({"url": url, "max.retries": 0, "timeout": 2}),
        {},
        unreachable_backoff=10.0,
        clock=lambda: now[0],
    )
    body = SingleObjectSerde(catalog).encode(sample())[10:]
    with pytest.raises(RegistryUnavailableError, match="did not answer for schema id 7"):
        serde.decode(frame(7) + body)
    now[0] += 5
    with pytest.raises(RegistryUnavailableError, match="failed 10s ago or less"):
        serde.decode(frame(8) + body)
    now[0] += 6  # the backoff is over: the registry is asked again
    with pytest.raises(RegistryUnavailableError, match="did not answer for schema id 8"):
        serde.decode(frame(8) + body)


def test_a_registry_that_refuses_an_incompatible_schema_stops_the_start(
    registry: StandInRegistry,
) -> None:
    make_serde(settings_for(registry.url))
    schemas = load_expanded(SCHEMAS)
    changed = copy.deepcopy(schemas["pipeline.events.MessageReceived"])
    changed["fields"].append({"name": "priority", "type": "int"})  # no default
    catalog = SchemaCatalog([changed, *(s for n, s in schemas.items() if n.endswith("DeadLetter"))])
    serde = ConfluentSerde(
        catalog,
        client(registry),
        {"message_received": f"{PREFIX}message_received-value"},
    )
    with pytest.raises(SchemaError, match=r"refused the schema of t1\.message_received-value"):
        serde.register()

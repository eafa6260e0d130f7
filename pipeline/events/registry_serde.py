"""Wire format with a schema registry: the Confluent framing, as Kafka tooling reads it.

    00 | 4-byte big-endian schema id | Avro body

What Kafka Connect, ksqlDB, Flink and Kafka UI deserialise. The catalog's schemas are
registered under the TopicNameStrategy subject of their topic (``<prefix><topic>-value``)
with compatibility BACKWARD; a writer schema is looked up by id once and its reading plan
cached, as the single-object reader does per fingerprint. Encoding and decoding stay with
fastavro; confluent-kafka's ``SchemaRegistryClient`` does the talking to the registry.

A record whose schema id the registry does not know, or that arrives while the registry
cannot be reached and its id is not cached yet, raises a ``SerdeError`` (the runtime
dead-letters it with the reason) instead of stopping the service.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from pipeline.errors import (
    CorruptEventError,
    RegistryUnavailableError,
    SchemaError,
    UnknownSchemaError,
)
from pipeline.events.catalog import DEAD_LETTER, SchemaCatalog, parse_known, schema_text
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde, _Plan, encode_with, plan_for, read_body

MAGIC_BYTE = b"\x00"
HEADER_SIZE = 5
CONTENT_TYPE = "application/vnd.apache.avro+binary; encoding=confluent"
COMPATIBILITY = "BACKWARD"
_NOT_FOUND = 404


def frame(schema_id: int) -> bytes:
    """The 5 bytes before a body: magic byte 0 and the schema id, big-endian."""
    return MAGIC_BYTE + schema_id.to_bytes(4, "big")


def value_subject(topic: str) -> str:
    """TopicNameStrategy, the registry's usual naming: ``<topic>-value``."""
    return f"{topic}-value"


class ConfluentSerde(SingleObjectSerde):
    """Encodes with registered schema ids and decodes by looking writer schemas up by id.

    ``subjects`` maps each event type (``dead_letter`` included) to its subject.
    """

    content_type = CONTENT_TYPE

    def __init__(
        self,
        catalog: SchemaCatalog,
        client: SchemaRegistryClient,
        subjects: Mapping[str, str],
        *,
        unreachable_backoff: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(catalog)
        self.client = client
        self.subjects = dict(subjects)
        self._ids: dict[str, int] = {}  # event type -> id of this process's reader schema
        self._id_plans: dict[int, _Plan] = {}  # writer schema id -> reading plan
        self._backoff = unreachable_backoff
        self._clock = clock
        self._quiet_until = 0.0
        self._last_failure = ""

    # --- registration -------------------------------------------------------------------------

    def register(self) -> dict[str, int]:
        """Register every reader schema under its subject (compatibility BACKWARD).

        Raises RegistryUnavailableError when the registry cannot be reached and SchemaError
        when it refuses a schema (an incompatible change): the service must not start then.
        """
        for event_type in sorted(self.subjects):
            self.schema_id(event_type)
        return dict(self._ids)

    def schema_id(self, event_type: str) -> int:
        """The registered id of the reader schema of ``event_type`` (registered on first use)."""
        known = self._ids.get(event_type)
        if known is not None:
            return known
        subject = self.subject(event_type)
        schema = Schema(schema_text(self.catalog.reader(event_type)), "AVRO")
        try:
            self.client.set_compatibility(subject, COMPATIBILITY)
            schema_id = int(self.client.register_schema(subject, schema))
        except SchemaRegistryError as exc:
            raise SchemaError(f"the registry refused the schema of {subject}: {exc}") from exc
        except Exception as exc:  # httpx transport errors, timeouts
            raise RegistryUnavailableError(
                f"cannot register {subject} at the schema registry: {exc}"
            ) from exc
        self._ids[event_type] = schema_id
        writer = self.catalog.reader(event_type)
        self._id_plans.setdefault(schema_id, plan_for(self.catalog, writer))
        return schema_id

    def subject(self, event_type: str) -> str:
        try:
            return self.subjects[event_type]
        except KeyError:
            raise SchemaError(f"no registry subject for event type {event_type!r}") from None

    # --- encoding -----------------------------------------------------------------------------

    def encode_record(self, event_type: str, record: Mapping[str, Any]) -> bytes:
        schema = self.catalog.reader(event_type)
        return encode_with(schema, record, header=frame(self.schema_id(event_type)))

    def encode(self, event: Event) -> bytes:
        metadata = event.metadata
        schema = self.catalog.reader(metadata.event_type)
        header = frame(self.schema_id(metadata.event_type))
        return encode_with(
            schema, {**event.data, "metadata": metadata.to_record()}, lean=True, header=header
        )

    # --- decoding -----------------------------------------------------------------------------

    def _read(self, data: bytes, *, lean: bool) -> tuple[str, dict[str, Any]]:
        if len(data) < HEADER_SIZE or data[:1] != MAGIC_BYTE:
            raise CorruptEventError(
                f"not in the Confluent wire format (expected magic byte 00, got "
                f"{data[:1].hex()!r}, {len(data)} bytes)"
            )
        schema_id = int.from_bytes(data[1:HEADER_SIZE], "big")
        plan = self._id_plans.get(schema_id) or self._plan_for_id(schema_id)
        return read_body(data, HEADER_SIZE, plan, lean=lean)

    def _plan_for_id(self, schema_id: int) -> _Plan:
        now = self._clock()
        if now < self._quiet_until:
            raise RegistryUnavailableError(
                f"schema id {schema_id} is not cached and the schema registry failed "
                f"{self._backoff:g}s ago or less ({self._last_failure})"
            )
        try:
            registered = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == _NOT_FOUND:
                raise UnknownSchemaError(
                    f"schema id {schema_id} is not in the schema registry: {exc}"
                ) from exc
            raise self._unavailable(now, schema_id, exc) from exc
        except Exception as exc:  # httpx transport errors, timeouts
            raise self._unavailable(now, schema_id, exc) from exc
        writer_type = registered.schema_type or "AVRO"
        if writer_type != "AVRO":
            raise UnknownSchemaError(f"schema id {schema_id} is {writer_type}, not Avro")
        if registered.references:
            raise UnknownSchemaError(
                f"schema id {schema_id} uses schema references; register it with its named "
                "types inline"
            )
        try:
            writer = parse_known(json.loads(registered.schema_str or ""))
            plan = plan_for(self.catalog, writer)
        except (ValueError, SchemaError) as exc:
            raise UnknownSchemaError(f"schema id {schema_id} cannot be read here: {exc}") from exc
        self._id_plans[schema_id] = plan
        return plan

    def _unavailable(self, now: float, schema_id: int, exc: Exception) -> RegistryUnavailableError:
        self._quiet_until = now + self._backoff
        self._last_failure = f"{type(exc).__name__}: {exc}"
        return RegistryUnavailableError(
            f"the schema registry did not answer for schema id {schema_id}: {self._last_failure}"
        )


def subjects_for(
    catalog: SchemaCatalog, topic: Callable[[str], str], dead_letters: str
) -> dict[str, str]:
    """Event type -> subject: each type's topic, and the dead-letter topic for dead letters."""
    subjects = {t: value_subject(topic(t)) for t in catalog.event_types}
    subjects[DEAD_LETTER] = value_subject(topic(dead_letters))
    return subjects

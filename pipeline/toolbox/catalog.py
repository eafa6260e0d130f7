"""The tool catalog on Kafka: what every tools service serves, one record per tool.

Each tools service advertises the tools it serves on the compacted ``tool_catalog``
topic: a ``pipeline.events.ToolAdvertised`` record per tool, keyed by the tool's name,
naming the service and the source that serve it and the tool's guarantee; a tombstone
withdraws a tool. The agent offers the model exactly what the topic holds.

A record written before tools declared a guarantee (an older tools service, a record
kept by compaction) still decodes, with no guarantee: :class:`CatalogCodec` knows that
earlier version of the schema as a writer.

:class:`CatalogFollower` keeps a process's view of the topic: it reads the topic to its
end at start and then again every ``catalog_refresh_seconds``, with the state package's
changelog reader (an assigned consumer from the last offset read to the end).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.errors import ConfigError, PipelineError
from pipeline.events.model import utc_now
from pipeline.events.registry_serde import MAGIC_BYTE, ConfluentSerde, value_subject
from pipeline.events.serde import SingleObjectSerde
from pipeline.events.wire import registry_client
from pipeline.state.changelog import Restored, partition_counts, read_changelog
from pipeline.toolbox.guarantee import Guarantee
from pipeline.toolbox.registry import Tool

log = logging.getLogger(__name__)

RECORD_TYPE = "tool_advertised"
FIELDS_ADDED = ("guarantee",)
"""The fields ToolAdvertised gained since its first version, oldest first."""
FAST_REFRESH_SECONDS = 0.2

Reader = Callable[[dict[int, int | None]], dict[int, Restored]]


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One advertised tool: its spec, the service and source that serve it, and its
    guarantee (None when the record was written before tools declared one)."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    service: str
    source: str
    guarantee: Guarantee | None = None

    @classmethod
    def of(cls, tool: Tool, service: str) -> CatalogEntry:
        return cls(
            tool.name, tool.description, dict(tool.parameters), service, tool.source, tool.guarantee
        )

    @property
    def origin(self) -> str:
        """Who serves it, for messages: ``plugin:weather of tools service 'tools-a'``."""
        return f"{self.source} of tools service {self.service!r}"

    def same_spec(self, other: CatalogEntry) -> bool:
        """Whether the model would see the same tool (name, description, arguments)."""
        return (self.name, self.description, _canonical(self.parameters)) == (
            other.name,
            other.description,
            _canonical(other.parameters),
        )


class CatalogCodec:
    """ToolAdvertised records in the wire format of the events: single-object encoded, or
    with a schema registry (:meth:`for_settings` in confluent mode) in the Confluent wire
    format under the catalog topic's subject, registered on the first encode. Either form
    decodes (a compacted topic keeps records written before a switch), and so do records
    of the schema's earlier versions (:func:`earlier_versions`)."""

    def __init__(self, schemas_dir: Path, *, registry: ConfluentSerde | None = None) -> None:
        self._serde = SingleObjectSerde.for_record(schemas_dir, RECORD_TYPE, "tool catalog")
        for earlier in earlier_versions(self._serde.catalog.reader(RECORD_TYPE).parsed):
            self._serde.catalog.add_writer(earlier)
        self._registry = registry

    @classmethod
    def for_settings(cls, settings: Settings) -> CatalogCodec:
        """The codec of ``settings``' wire format; in confluent mode its subject is
        ``<catalog topic>-value``."""
        codec = cls(settings.resource_dir("schemas"))
        if settings.wire_format == "confluent":
            subject = value_subject(settings.topic(settings.tools.catalog_topic))
            codec._registry = ConfluentSerde(
                codec._serde.catalog,
                registry_client(settings),
                {RECORD_TYPE: subject},
                unreachable_backoff=settings.schema_registry.unreachable_backoff_seconds,
            )
        return codec

    @property
    def content_type(self) -> str:
        """The content-type header of the records :meth:`encode` writes."""
        return (self._registry or self._serde).content_type

    def headers(self) -> tuple[tuple[str, str], ...]:
        """The headers of an advertised tool's record, as the AsyncAPI document declares
        them for every message: its record type and content type (a catalog entry is
        not an event: it has no event id and belongs to no turn's trace)."""
        return (("event-type", RECORD_TYPE), ("content-type", self.content_type))

    def encode(self, entry: CatalogEntry) -> bytes:
        return (self._registry or self._serde).encode_record(
            RECORD_TYPE,
            {
                "name": entry.name,
                "description": entry.description,
                "parameters_json": json.dumps(entry.parameters, sort_keys=True),
                "service": entry.service,
                "source": entry.source,
                "advertised_at": utc_now(),
                "guarantee": entry.guarantee,
            },
        )

    def decode(self, data: bytes) -> CatalogEntry:
        """The entry in ``data``; ValueError saying why when it is not a valid one."""
        serde = self._registry if self._registry and data[:1] == MAGIC_BYTE else self._serde
        try:
            kind, record = serde.decode_record(data)
            parameters = json.loads(record["parameters_json"])
        except (PipelineError, ValueError, KeyError) as exc:
            raise ValueError(f"not a ToolAdvertised record: {exc}") from exc
        if kind != RECORD_TYPE or not isinstance(parameters, dict):
            raise ValueError(f"not a ToolAdvertised record ({kind}, {type(parameters).__name__})")
        return CatalogEntry(
            record["name"],
            record["description"],
            parameters,
            record["service"],
            record["source"],
            record.get("guarantee"),  # an enum symbol; one this reader lacks reads as at_most_once
        )


def earlier_versions(schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The earlier versions of the ToolAdvertised ``schema``, newest first: each without
    the fields added since (:data:`FIELDS_ADDED`).

    A fingerprint covers names, types and order, not docs or defaults, so such a version
    is exactly the schema older tools services wrote with.
    """
    versions: list[dict[str, Any]] = []
    fields = list(schema["fields"])
    for added in reversed(FIELDS_ADDED):
        fields = [f for f in fields if f["name"] != added]
        versions.append({**schema, "fields": fields})
    return versions


class CatalogFollower:
    """This process's view of the tool catalog topic, kept fresh by :meth:`follow`."""

    def __init__(self, settings: Settings, *, reader: Reader | None = None) -> None:
        """``reader(starts)`` replaces reading the topic from Kafka (tests; one partition)."""
        self.settings = settings
        self.topic = settings.topic(settings.tools.catalog_topic)
        self.codec = CatalogCodec.for_settings(settings)
        self.entries: dict[str, CatalogEntry] = {}
        self.loaded = asyncio.Event()
        self._read: Reader = reader or self._read_topic
        self._starts: dict[int, int | None] | None = None if reader is None else {0: None}
        self._changed = asyncio.Condition()
        self.version = 0  # bumped on every change of ``entries``

    async def refresh(self) -> bool:
        """Read what was written since the last read; whether ``entries`` changed."""
        if self._starts is None:
            config = self._consumer_config()
            counts = await asyncio.to_thread(partition_counts, config, [self.topic])
            if not counts.get(self.topic):
                raise ConfigError(
                    f"the tool catalog topic {self.topic} does not exist "
                    "(run `pipeline topics apply`)"
                )
            self._starts = dict.fromkeys(range(counts[self.topic]))
        restored = await asyncio.to_thread(self._read, dict(self._starts))
        changed = False
        for partition, result in restored.items():
            self._starts[partition] = result.end
            for name, entry in result.values.items():
                # An unreadable record (see _decode) advertises nothing.
                changed |= self._apply(name, entry if isinstance(entry, CatalogEntry) else None)
        first = not self.loaded.is_set()
        self.loaded.set()
        if changed or first:
            async with self._changed:
                self.version += 1
                self._changed.notify_all()
        return changed

    async def follow(self, *, fast_while_empty: float = 0.0) -> None:
        """Refresh forever; a failed read is logged and tried again (not the first one).

        For the first ``fast_while_empty`` seconds, an empty catalog is read every 0.2 s,
        so that tools advertised just after start are seen at once.
        """
        interval = self.settings.tools.catalog_refresh_seconds
        fast_until = time.monotonic() + fast_while_empty
        await self.refresh()
        while True:
            fast = not self.entries and time.monotonic() < fast_until
            await asyncio.sleep(min(interval, FAST_REFRESH_SECONDS) if fast else interval)
            try:
                await self.refresh()
            except PipelineError as exc:
                log.warning("cannot read the tool catalog %s: %s; retrying", self.topic, exc)

    async def wait_changed(self, since: int) -> None:
        """Wait until ``version`` passes ``since`` (bound it with ``asyncio.timeout``)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > since)

    def _apply(self, name: str, entry: CatalogEntry | None) -> bool:
        old = self.entries.get(name)
        if entry is None:
            if old is None:
                return False
            del self.entries[name]
            log.info("tool %s withdrawn from the catalog (was %s)", name, old.origin)
            return True
        if old == entry:
            return False
        self.entries[name] = entry
        log.info("tool %s advertised by %s", name, entry.origin)
        return True

    def _decode(self, data: bytes) -> CatalogEntry | str:
        try:
            return self.codec.decode(data)
        except ValueError as exc:
            # A record nobody can use must not stop the reader: skip it and say so.
            log.warning("skipping a record of %s: %s", self.topic, exc)
            return str(exc)

    def _consumer_config(self) -> dict[str, Any]:
        return {
            **self.settings.consumer_config(),
            "group.id": f"{self.settings.topic_prefix}tool-catalog-reader",
        }

    def _read_topic(self, starts: dict[int, int | None]) -> dict[int, Restored]:
        return read_changelog(
            self._consumer_config(), self.topic, starts, self._decode, timeout=30.0
        )


def _canonical(parameters: Mapping[str, Any]) -> str:
    return json.dumps(parameters, sort_keys=True, separators=(",", ":"))

"""The event model: metadata every event carries, and the event itself."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def utc_now() -> datetime:
    """Now, truncated to milliseconds as Avro's timestamp-millis stores it."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class Metadata:
    """What every event says about itself (schema ``pipeline.events.Metadata``)."""

    event_id: uuid.UUID
    event_type: str
    conversation_id: str
    tenant_id: str
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None
    occurred_at: datetime
    producer: str

    @classmethod
    def new(
        cls,
        event_type: str,
        conversation_id: str,
        *,
        tenant_id: str,
        producer: str,
        cause: Metadata | None = None,
        occurred_at: datetime | None = None,
    ) -> Metadata:
        """Metadata for a new event; with ``cause`` it continues that event's chain."""
        event_id = uuid.uuid4()
        return cls(
            event_id=event_id,
            event_type=event_type,
            conversation_id=conversation_id,
            tenant_id=tenant_id,
            correlation_id=cause.correlation_id if cause else event_id,
            causation_id=cause.event_id if cause else None,
            occurred_at=occurred_at or utc_now(),
            producer=producer,
        )

    def caused(
        self,
        event_type: str,
        *,
        producer: str,
        event_id: uuid.UUID | None = None,
        conversation_id: str | None = None,
    ) -> Metadata:
        """Metadata of an event this one causes: same tenant and correlation id."""
        return Metadata(
            event_id=event_id or uuid.uuid4(),
            event_type=event_type,
            conversation_id=conversation_id or self.conversation_id,
            tenant_id=self.tenant_id,
            correlation_id=self.correlation_id,
            causation_id=self.event_id,
            occurred_at=utc_now(),
            producer=producer,
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "conversation_id": self.conversation_id,
            "tenant_id": self.tenant_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "occurred_at": self.occurred_at,
            "producer": self.producer,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Metadata:
        return cls(
            event_id=_as_uuid(record["event_id"]),
            event_type=record["event_type"],
            conversation_id=record["conversation_id"],
            tenant_id=record["tenant_id"],
            correlation_id=_as_uuid(record["correlation_id"]),
            causation_id=_as_uuid(record["causation_id"]) if record["causation_id"] else None,
            occurred_at=record["occurred_at"],
            producer=record["producer"],
        )


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded event: its metadata and the fields of its type.

    ``event["text"]`` reads a field; ``event.data`` holds all of them.
    """

    metadata: Metadata
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.metadata.event_type

    @property
    def id(self) -> uuid.UUID:
        return self.metadata.event_id

    @property
    def conversation_id(self) -> str:
        return self.metadata.conversation_id

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    def to_record(self) -> dict[str, Any]:
        """The Avro record: ``metadata`` plus the type's fields."""
        return {"metadata": self.metadata.to_record(), **self.data}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Event:
        data = {k: v for k, v in record.items() if k != "metadata"}
        return cls(Metadata.from_record(record["metadata"]), data)


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))

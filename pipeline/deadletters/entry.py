"""What an operator sees of a dead letter, and the record that says it was redriven.

A :class:`DeadLetterEntry` is one record of the dead-letter topic decoded: where it is
(its letter id, ``<partition>:<offset>``), where the original came from, why it failed,
the original bytes, key and headers, and the :class:`Redrive` if it was redriven.
:class:`RedriveCodec` reads and writes ``pipeline.events.DeadLetterRedriven`` records,
single-object encoded like the tool catalog's, whatever the wire format of the events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError, UnknownDeadLetterError
from pipeline.events.catalog import DEAD_LETTER
from pipeline.events.jsonable import jsonable
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.headers import EVENT_ID, EVENT_TYPE

REDRIVE_RECORD = "dead_letter_redriven"
# Headers of a redriven record, beside the original's.
REDRIVEN_FROM = "dlt-redriven-from"  # the letter id
REDRIVE_ID = "dlt-redrive-id"
REDRIVEN_BY = "dlt-redriven-by"  # the operator

Headers = tuple[tuple[str, bytes], ...]


def parse_letter_id(letter_id: str) -> tuple[int, int]:
    """``"2:17"`` -> (2, 17); UnknownDeadLetterError for anything else."""
    partition, sep, offset = letter_id.strip().partition(":")
    if sep and partition.isdigit() and offset.isdigit():
        return int(partition), int(offset)
    raise UnknownDeadLetterError(
        f"{letter_id!r} is not a dead letter id: ids are <partition>:<offset> "
        "(`pipeline dlq list` shows them)"
    )


@dataclass(frozen=True, slots=True)
class Redrive:
    """One redrive: who, when, and where the original was produced again."""

    dead_letter_id: str  # the dead letter's event id: copies written after a crash share it
    letter_id: str
    operator: str
    redrive_id: str
    redriven_at: datetime
    target_topic: str
    target_partition: int
    target_offset: int

    def as_json(self) -> dict[str, Any]:
        return {
            "dead_letter_id": self.dead_letter_id,
            "letter_id": self.letter_id,
            "operator": self.operator,
            "redrive_id": self.redrive_id,
            "redriven_at": self.redriven_at.isoformat(),
            "target": f"{self.target_topic}[{self.target_partition}]@{self.target_offset}",
        }


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """A record of the dead-letter topic, decoded."""

    letter_id: str  # "<partition>:<offset>" in the dead-letter topic
    partition: int
    offset: int
    dead_letter_id: str  # its event id (see pipeline.runtime.dead_letter.dead_letter_id)
    dead_lettered_at: datetime | None
    source_topic: str
    source_partition: int
    source_offset: int
    source_timestamp: datetime | None
    stage: str  # decode | handler | delivery
    service: str
    handler: str | None
    error_type: str
    error: str
    attempts: int
    event_type: str | None
    conversation_id: str | None
    key: bytes | None
    value: bytes | None
    headers: Headers
    redriven: Redrive | None = None
    tenant: str | None = None  # the original event's; None when it does not decode

    @property
    def source(self) -> str:
        return f"{self.source_topic}[{self.source_partition}]@{self.source_offset}"

    def with_redrive(self, redrive: Redrive | None) -> DeadLetterEntry:
        return self if redrive is None else replace(self, redriven=redrive)

    def line(self) -> str:
        """One line for a listing."""
        when = self.dead_lettered_at.strftime("%Y-%m-%d %H:%M:%S") if self.dead_lettered_at else "-"
        state = f"redriven by {self.redriven.operator}" if self.redriven else "dead"
        error = " ".join(f"{self.error_type}: {self.error}".split())[:80]
        return (
            f"{self.letter_id:<9} {when}  {self.source:<40} {self.event_type or '?':<17} "
            f"{self.stage:<8} {state:<20} {error}"
        )

    def details(self) -> str:
        """Every field, for ``show``; the original value as its event when it decodes."""
        rows = [
            ("letter", self.letter_id),
            ("dead letter id", self.dead_letter_id),
            ("dead-lettered at", str(self.dead_lettered_at or "-")),
            ("source", self.source),
            ("source timestamp", str(self.source_timestamp or "-")),
            ("event type", self.event_type or "-"),
            ("conversation", self.conversation_id or "-"),
            ("tenant", self.tenant or "-"),
            ("service", self.service),
            ("handler", self.handler or "-"),
            ("stage", self.stage),
            ("attempts", str(self.attempts)),
            ("error", f"{self.error_type}: {self.error}"),
            ("key", _text(self.key)),
            ("value", f"{len(self.value)} bytes" if self.value is not None else "-"),
            ("headers", ", ".join(f"{k}={_text(v)}" for k, v in self.headers) or "-"),
        ]
        if self.redriven is None:
            rows.append(("redriven", "no"))
        else:
            r = self.redriven
            rows.append(
                (
                    "redriven",
                    f"by {r.operator} at {r.redriven_at.isoformat()} to "
                    f"{r.target_topic}[{r.target_partition}]@{r.target_offset} "
                    f"(redrive {r.redrive_id})",
                )
            )
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def as_json(self) -> dict[str, Any]:
        return {
            "letter_id": self.letter_id,
            "partition": self.partition,
            "offset": self.offset,
            "dead_letter_id": self.dead_letter_id,
            "dead_lettered_at": _iso(self.dead_lettered_at),
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "source_timestamp": _iso(self.source_timestamp),
            "stage": self.stage,
            "service": self.service,
            "handler": self.handler,
            "error_type": self.error_type,
            "error": self.error,
            "attempts": self.attempts,
            "event_type": self.event_type,
            "conversation_id": self.conversation_id,
            "tenant": self.tenant,
            "key": jsonable(self.key),
            "value": jsonable(self.value),
            "headers": [[k, jsonable(v)] for k, v in self.headers],
            "redriven": self.redriven.as_json() if self.redriven else None,
        }


def decode_entry(
    serde: SingleObjectSerde,
    partition: int,
    offset: int,
    value: bytes,
    headers: Headers,
) -> DeadLetterEntry:
    """A dead-letter record as an entry; UnknownDeadLetterError when it is not one."""
    letter_id = f"{partition}:{offset}"
    try:
        kind, record = serde.decode_record(value)
    except PipelineError as exc:
        raise UnknownDeadLetterError(f"{letter_id} is not a dead letter: {exc}") from exc
    if kind != DEAD_LETTER:
        raise UnknownDeadLetterError(f"{letter_id} is a {kind} record, not a dead letter")
    original: Headers = tuple(
        (h["key"], h["value"] if h["value"] is not None else b"") for h in record["headers"]
    )
    event_type, conversation_id = record.get("event_type"), record.get("conversation_id")
    event = _original_event(serde, record)
    if event_type is None or conversation_id is None:
        event_type, conversation_id = _from_original(event, record, original)
    own = dict(headers)
    dead_letter_id = own.get(EVENT_ID, b"").decode() or f"letter:{letter_id}"
    return DeadLetterEntry(
        letter_id=letter_id,
        partition=partition,
        offset=offset,
        dead_letter_id=dead_letter_id,
        dead_lettered_at=record["failed_at"],
        source_topic=record["source_topic"],
        source_partition=record["source_partition"],
        source_offset=record["source_offset"],
        source_timestamp=record.get("source_timestamp"),
        stage=record["stage"],
        service=record["service"],
        handler=record.get("handler"),
        error_type=record["error_type"],
        error=record["error_message"],
        attempts=record["attempts"],
        event_type=event_type,
        conversation_id=conversation_id,
        key=record.get("key"),
        value=record.get("value"),
        headers=original,
        tenant=event.metadata.tenant_id if event is not None else None,
    )


def _original_event(serde: SingleObjectSerde, record: dict[str, Any]) -> Event | None:
    """The letter's original as an event, when it decodes (not after a decode failure)."""
    value = record.get("value")
    if not value:
        return None
    try:
        return serde.decode(value)
    except PipelineError:
        return None


def _from_original(
    event: Event | None, record: dict[str, Any], headers: Headers
) -> tuple[str | None, str | None]:
    """Event type and conversation of a letter that did not record them (a decode
    failure): from the original, when it decodes after all, else its headers and key."""
    if event is not None:
        return event.type, event.conversation_id
    event_type = dict(headers).get(EVENT_TYPE)
    key = record.get("key")
    return (
        event_type.decode("utf-8", "replace") if event_type else record.get("event_type"),
        key.decode("utf-8", "replace") if key else record.get("conversation_id"),
    )


class RedriveCodec:
    """DeadLetterRedriven records, single-object encoded."""

    def __init__(self, schemas_dir: Path) -> None:
        self._serde = SingleObjectSerde.for_record(schemas_dir, REDRIVE_RECORD, "redrive")

    def encode(self, redrive: Redrive) -> bytes:
        return self._serde.encode_record(
            REDRIVE_RECORD,
            {
                "dead_letter_id": redrive.dead_letter_id,
                "letter_id": redrive.letter_id,
                "operator_id": redrive.operator,
                "redrive_id": redrive.redrive_id,
                "redriven_at": redrive.redriven_at,
                "target_topic": redrive.target_topic,
                "target_partition": redrive.target_partition,
                "target_offset": redrive.target_offset,
            },
        )

    def decode(self, data: bytes) -> Redrive:
        """The redrive in ``data``; ValueError saying why when it is not one."""
        try:
            kind, record = self._serde.decode_record(data)
        except PipelineError as exc:
            raise ValueError(f"not a DeadLetterRedriven record: {exc}") from exc
        if kind != REDRIVE_RECORD:
            raise ValueError(f"not a DeadLetterRedriven record: {kind}")
        return Redrive(
            dead_letter_id=record["dead_letter_id"],
            letter_id=record["letter_id"],
            operator=record["operator_id"],
            redrive_id=str(record["redrive_id"]),
            redriven_at=record["redriven_at"],
            target_topic=record["target_topic"],
            target_partition=record["target_partition"],
            target_offset=record["target_offset"],
        )


def new_redrive_id() -> str:
    return str(uuid.uuid4())


def _text(value: bytes | None) -> str:
    if value is None:
        return "-"
    try:
        return value.decode()
    except UnicodeDecodeError:
        return f"0x{value.hex()}"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None

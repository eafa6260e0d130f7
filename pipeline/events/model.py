"""The event model: metadata every event carries, and the event itself."""

from __future__ import annotations

import functools
import hashlib
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


def utc_now() -> datetime:
    """Now, truncated to milliseconds as Avro's timestamp-millis stores it."""
    return from_millis(now_millis())


def now_millis() -> int:
    return time.time_ns() // 1_000_000


def to_millis(moment: datetime) -> int:
    """Epoch milliseconds, as Avro's timestamp-millis writes them (a naive time is UTC)."""
    delta = moment - (_EPOCH if moment.tzinfo is not None else _NAIVE_EPOCH)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_millis(millis: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=millis)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def derived_id(namespace: str, name: str) -> str:
    """``str(uuid.uuid5(UUID(namespace), name))``, from and to the canonical text form."""
    h = _sha1(bytes.fromhex(namespace.replace("-", "")) + name.encode()).hexdigest()
    # Version 5 in the 13th digit, the RFC 4122 variant (10xx) in the 17th.
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 0b11] for digit in "0123456789abcdef"}

# CPython's own SHA-1: for a 40-byte input OpenSSL's per-call digest lookup and context
# set-up dominate, and in the running service a derived id took a third less time with
# it. Not a security use: the hash names an event (uuid5), it protects nothing.
try:
    from _sha1 import sha1 as _sha1  # type: ignore[import-not-found]
except ImportError:  # a Python built without its own hashes
    _sha1 = functools.partial(hashlib.sha1, usedforsecurity=False)


_Wire = tuple[str, str, str, str, str, str | None, int, str]  # the fields as written


class Metadata:
    """What every event says about itself (schema ``pipeline.events.Metadata``).

    Immutable. Ids read as ``uuid.UUID`` and ``occurred_at`` as a UTC datetime, but they
    are kept in the form the wire carries (canonical text, epoch milliseconds) and
    converted on first access, so chaining one event to the next converts nothing.
    """

    __slots__ = ("_objects", "_wire")

    _wire: _Wire
    _objects: dict[str, Any]  # conversions made so far; unset until the first

    def __init__(
        self,
        event_id: uuid.UUID | str,
        event_type: str,
        conversation_id: str,
        tenant_id: str,
        correlation_id: uuid.UUID | str,
        causation_id: uuid.UUID | str | None,
        occurred_at: datetime | int,
        producer: str,
    ) -> None:
        """Ids as UUIDs or their text; ``occurred_at`` as a datetime or epoch millis."""
        objects = None
        if isinstance(occurred_at, datetime):
            objects = {"occurred_at": occurred_at}
            occurred_at = to_millis(occurred_at)
        wire = (
            _text(event_id),
            event_type,
            conversation_id,
            tenant_id,
            _text(correlation_id),
            None if causation_id is None else _text(causation_id),
            occurred_at,
            producer,
        )
        _set(self, "_wire", wire)
        if objects is not None:
            _set(self, "_objects", objects)

    @classmethod
    def _of(cls, wire: _Wire) -> Metadata:
        """From fields already in wire form and checked."""
        metadata = cls.__new__(cls)
        _set(metadata, "_wire", wire)
        return metadata

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Metadata is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Metadata is immutable; cannot delete {name!r}")

    def _object(self, name: str, make: Callable[[], Any]) -> Any:
        objects = getattr(self, "_objects", None)  # unset until something is converted
        if objects is None:
            objects = {}
            _set(self, "_objects", objects)
        value = objects.get(name)
        if value is None:
            value = objects[name] = make()
        return value

    @property
    def event_id(self) -> uuid.UUID:
        return self._object("event_id", lambda: uuid.UUID(self._wire[0]))  # type: ignore[no-any-return]

    @property
    def event_type(self) -> str:
        return self._wire[1]

    @property
    def conversation_id(self) -> str:
        return self._wire[2]

    @property
    def tenant_id(self) -> str:
        return self._wire[3]

    @property
    def correlation_id(self) -> uuid.UUID:
        return self._object("correlation_id", lambda: uuid.UUID(self._wire[4]))  # type: ignore[no-any-return]

    @property
    def causation_id(self) -> uuid.UUID | None:
        causation = self._wire[5]
        if causation is None:
            return None
        return self._object("causation_id", lambda: uuid.UUID(causation))  # type: ignore[no-any-return]

    @property
    def occurred_at(self) -> datetime:
        return self._object("occurred_at", lambda: from_millis(self._wire[6]))  # type: ignore[no-any-return]

    @property
    def producer(self) -> str:
        return self._wire[7]

    @property
    def event_id_text(self) -> str:
        """``event_id`` in its canonical text form, as the wire and headers carry it."""
        return self._wire[0]

    @property
    def correlation_id_text(self) -> str:
        return self._wire[4]

    @property
    def occurred_millis(self) -> int:
        """``occurred_at`` as epoch milliseconds."""
        return self._wire[6]

    def _key(self) -> tuple[Any, ...]:
        wire = self._wire
        return (self.event_id, *wire[1:4], self.correlation_id, self.causation_id, *wire[6:])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Metadata):
            return NotImplemented
        return self._wire == other._wire or self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        wire = self._wire
        return (
            f"Metadata(event_id={wire[0]!r}, event_type={wire[1]!r}, "
            f"conversation_id={wire[2]!r}, tenant_id={wire[3]!r}, "
            f"correlation_id={wire[4]!r}, causation_id={wire[5]!r}, "
            f"occurred_at={self.occurred_at.isoformat()!r}, producer={wire[7]!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Metadata, self._wire)

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
        event_id = str(uuid.uuid4())
        return cls(
            event_id,
            event_type,
            conversation_id,
            tenant_id,
            cause._wire[4] if cause else event_id,
            cause._wire[0] if cause else None,
            occurred_at or now_millis(),
            producer,
        )

    def caused(
        self,
        event_type: str,
        *,
        producer: str,
        event_id: uuid.UUID | str | None = None,
        conversation_id: str | None = None,
    ) -> Metadata:
        """Metadata of an event this one causes: same tenant and correlation id."""
        text = str(uuid.uuid4()) if event_id is None else _text(event_id)
        return self._child(text, event_type, producer, conversation_id)

    def caused_derived(
        self, event_type: str, name: str, *, producer: str, conversation_id: str | None = None
    ) -> Metadata:
        """``caused`` with the id ``derived_id`` of this id and ``name``: a repeat gets the
        same id."""
        return self._child(derived_id(self._wire[0], name), event_type, producer, conversation_id)

    def _child(
        self, event_id: str, event_type: str, producer: str, conversation_id: str | None
    ) -> Metadata:
        wire = self._wire
        return Metadata._of(
            (
                event_id,
                event_type,
                conversation_id or wire[2],
                wire[3],
                wire[4],
                wire[0],
                now_millis(),
                producer,
            )
        )

    def to_record(self) -> dict[str, Any]:
        """The Avro record as written: ids in canonical text, ``occurred_at`` in millis."""
        # A literal: twice as fast as dict(zip(...)), and this runs for every emitted event.
        event_id, event_type, conversation, tenant, correlation, causation, occurred, producer = (
            self._wire
        )
        return {
            "event_id": event_id,
            "event_type": event_type,
            "conversation_id": conversation,
            "tenant_id": tenant,
            "correlation_id": correlation,
            "causation_id": causation,
            "occurred_at": occurred,
            "producer": producer,
        }

    def to_dict(self) -> dict[str, Any]:
        """The fields as Python values: UUIDs and a datetime."""
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
        """From a decoded record, with or without Avro's logical types applied."""
        return cls(
            record["event_id"],
            record["event_type"],
            record["conversation_id"],
            record["tenant_id"],
            record["correlation_id"],
            record["causation_id"],
            record["occurred_at"],
            record["producer"],
        )


_set = object.__setattr__


def metadata_from_wire(record: Mapping[str, Any]) -> Metadata:
    """Metadata from a record decoded without logical types (ids as text, time as millis),
    as the runtime reads it; raises ValueError for an id that is not a UUID."""
    event_id, correlation, causation = (
        record["event_id"],
        record["correlation_id"],
        record["causation_id"],
    )
    # Both ids in one match (each is 36 characters when the pair is 72); the slow path
    # names the id that is wrong.
    if (
        len(event_id) != 36
        or _UUID_PAIR.fullmatch(event_id + correlation) is None
        or (causation is not None and _UUID_TEXT.fullmatch(causation) is None)
    ):
        _checked(event_id)
        _checked(correlation)
        if causation is not None:
            _checked(causation)
    return Metadata._of(
        (
            event_id,
            record["event_type"],
            record["conversation_id"],
            record["tenant_id"],
            correlation,
            causation,
            record["occurred_at"],
            record["producer"],
        )
    )


# Spelled out: a case-insensitive pattern matches at half the speed.
_HEX = "[0-9a-fA-F]"
_UUID_PATTERN = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
_UUID_TEXT = re.compile(_UUID_PATTERN)
_UUID_PAIR = re.compile(_UUID_PATTERN * 2)


def _checked(text: str) -> str:
    if _UUID_TEXT.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not a UUID in its canonical text form")
    return text


def _text(value: uuid.UUID | str) -> str:
    if isinstance(value, str):
        return _checked(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"expected a UUID or its text, got {type(value).__name__}")


AGENT_VERSION = "agent_version"
"""The field by which every event the agent emits names the agent's version label."""


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

    @property
    def agent_version(self) -> str | None:
        """The version label of the agent that emitted the event (its ``agent_version``
        field), or None for an event no agent emitted."""
        value = self.data.get(AGENT_VERSION)
        return value if isinstance(value, str) else None

    def to_record(self) -> dict[str, Any]:
        """The Avro record: ``metadata`` (as written, see Metadata.to_record) plus the fields."""
        return {**self.data, "metadata": self.metadata.to_record()}

    def to_dict(self) -> dict[str, Any]:
        """``metadata`` as Python values (see Metadata.to_dict) plus the type's fields."""
        return {"metadata": self.metadata.to_dict(), **self.data}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Event:
        data = dict(record)
        return cls(Metadata.from_record(data.pop("metadata")), data)

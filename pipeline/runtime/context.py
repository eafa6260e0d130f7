"""What a handler gets besides its event: a way to emit new events in the same chain."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from pipeline.errors import EventTypeError
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.observability.tracing import event_traceparent, parent_trace, trace_from_id
from pipeline.runtime.headers import Header, event_headers
from pipeline.runtime.spans import start_send, traceparent_of

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class Outgoing(NamedTuple):
    """An encoded record waiting to be produced once its handler succeeded."""

    event_type: str
    topic: str
    key: str | bytes
    value: bytes | None
    headers: tuple[Header, ...]
    event: Event | None = None
    span: Span | None = None  # its send span, with tracing on: ended when acknowledged


class Context:
    """Per-attempt handler context.

    ``emit`` encodes at once (a schema mismatch fails the handler, which is retried) and
    produces after the handler returned: a failed attempt emits nothing. Emitted events
    keep the conversation (the key) and the correlation id, set the causation id, and get
    ids derived from the cause's id, so a repeat after a crash repeats the same event ids.
    The event's offset is committed only after everything emitted was acknowledged.
    """

    __slots__ = (
        "_emits",
        "_emits_declared",
        "_outgoing",
        "_serde",
        "_topic_for",
        "_trace",
        "attempt",
        "event",
        "log",
        "offset",
        "partition",
        "service",
        "span",
        "topic",
        "traceparent",
    )

    def __init__(
        self,
        event: Event,
        *,
        service: str,
        attempt: int,
        serde: SingleObjectSerde,
        topic_for: Callable[[str], str],
        traceparent: str | bytes | None,
        logger: logging.Logger,
        topic: str = "",
        partition: int = 0,
        offset: int = 0,
        emits: Collection[str] | None = None,
        emits_declared: bool = False,
    ) -> None:
        """``emits``: the event types ``emit`` accepts (the service's declared ones, or
        every type of the catalog); None accepts any type the serde can encode."""
        self.event = event
        self.service = service
        self.attempt = attempt
        self.log = logger
        self.topic = topic
        self.partition = partition
        self.offset = offset  # the event's offset in its partition
        self.traceparent = traceparent
        # The attempt's span when tracing is on: the parent of the sends of its emits.
        self.span: Span | None = None
        self._serde = serde
        self._topic_for = topic_for
        self._outgoing: list[Outgoing] = []
        self._trace: tuple[str, str] | None = None
        self._emits = emits
        self._emits_declared = emits_declared

    def emit(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        conversation_id: str | None = None,
    ) -> Event:
        """Queue a new event caused by the current one; returns it with its metadata.

        Raises EventTypeError for a type the service does not declare or the catalog does
        not know: the runtime dead-letters the event at once instead of retrying.
        """
        if self._emits is not None and event_type not in self._emits:
            raise EventTypeError(self._refusal(event_type))
        metadata = self.event.metadata.caused_derived(
            event_type,
            f"{self.service}/{len(self._outgoing)}",
            producer=self.service,
            conversation_id=conversation_id,
        )
        event = Event(metadata, dict(data))
        value = self._serde.encode(event)
        event_id = metadata.event_id_text
        topic = self._topic_for(event_type)
        send = None
        if self.span is None:
            traceparent = event_traceparent(self.trace, event_id)
        else:
            send = start_send(self.span, topic, event, self.service)
            traceparent = traceparent_of(send)
        headers = event_headers(event_type, event_id, traceparent, self._serde.content_type)
        self._outgoing.append(
            Outgoing(event_type, topic, metadata.conversation_id, value, headers, event, send)
        )
        return event

    def _refusal(self, event_type: str) -> str:
        known = ", ".join(sorted(self._emits or ())) or "none"
        if self._emits_declared:
            return (
                f"service {self.service} emitted {event_type!r}, which it does not declare "
                f"(emits: {known}); add it to Service(..., emits=[...])"
            )
        return f"service {self.service} emitted unknown event type {event_type!r}; known: {known}"

    @property
    def trace(self) -> tuple[str, str]:
        """(trace id, flags) the emitted events belong to: the incoming event's trace, or,
        when it came without one, a trace named after its correlation id."""
        if self._trace is None:
            self._trace = parent_trace(self.traceparent) or trace_from_id(
                self.event.metadata.correlation_id_text
            )
        return self._trace

    def emit_record(
        self,
        topic: str,
        key: str | bytes,
        value: bytes | None,
        *,
        headers: tuple[Header, ...] = (),
        kind: str = "record",
    ) -> None:
        """Queue a raw record (a changelog write, a tombstone) with the handler's outputs.

        ``topic`` is a logical name: the prefix is added. ``kind`` labels its metrics.
        """
        self._outgoing.append(Outgoing(kind, self._topic_for(topic), key, value, headers))

    @property
    def outgoing(self) -> list[Outgoing]:
        return list(self._outgoing)

    def take_outgoing(self) -> list[Outgoing]:
        """The queued records, handed over to the runtime (no copy)."""
        return self._outgoing

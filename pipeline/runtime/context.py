"""What a handler gets besides its event: a way to emit new events in the same chain."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.events.model import Event, Metadata, utc_now
from pipeline.events.serde import CONTENT_TYPE, SingleObjectSerde
from pipeline.observability.tracing import child_traceparent
from pipeline.runtime.headers import CONTENT_TYPE as CONTENT_TYPE_HEADER
from pipeline.runtime.headers import EVENT_ID, EVENT_TYPE, TRACEPARENT, Header


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An encoded event waiting to be produced once its handler succeeded."""

    event: Event
    topic: str
    key: str
    value: bytes
    headers: tuple[Header, ...]


class Context:
    """Per-attempt handler context.

    ``emit`` encodes at once (a schema mismatch fails the handler, which is retried) and
    produces after the handler returned: a failed attempt emits nothing. Emitted events
    keep the conversation (the key) and the correlation id, set the causation id, and get
    ids derived from the cause's id, so a repeat after a crash repeats the same event ids.
    """

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
    ) -> None:
        self.event = event
        self.service = service
        self.attempt = attempt
        self.log = logger
        self._serde = serde
        self._topic_for = topic_for
        self._traceparent = traceparent
        self._outgoing: list[Outgoing] = []

    def emit(
        self,
        event_type: str,
        data: Mapping[str, Any],
        *,
        conversation_id: str | None = None,
    ) -> Event:
        """Queue a new event caused by the current one; returns it with its metadata."""
        cause = self.event.metadata
        conversation = conversation_id or cause.conversation_id
        metadata = Metadata(
            event_id=uuid.uuid5(cause.event_id, f"{self.service}/{len(self._outgoing)}"),
            event_type=event_type,
            conversation_id=conversation,
            tenant_id=cause.tenant_id,
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
            occurred_at=utc_now(),
            producer=self.service,
        )
        event = Event(metadata, dict(data))
        value = self._serde.encode(event)
        headers = (
            (EVENT_TYPE, event_type),
            (EVENT_ID, str(metadata.event_id)),
            (CONTENT_TYPE_HEADER, CONTENT_TYPE),
            (TRACEPARENT, child_traceparent(self._traceparent)),
        )
        self._outgoing.append(
            Outgoing(event, self._topic_for(event_type), conversation, value, headers)
        )
        return event

    @property
    def outgoing(self) -> list[Outgoing]:
        return list(self._outgoing)

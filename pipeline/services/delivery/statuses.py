"""What delivery reports of each response: its ``delivery_status`` events.

A final status (``sent``, ``failed``, ``unconfirmed``) goes out with the handler's outputs;
a ``retrying`` one is published at once, so whoever watches sees a send that is waiting,
with an id derived from the response and the attempt, so that a repeat after a crash
repeats the same event.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pipeline.errors import PipelineError
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher

log = logging.getLogger("pipeline.delivery")

STATUS = "delivery_status"


class Statuses:
    """Emits the ``delivery_status`` events of the service named ``name``."""

    def __init__(self, name: str, publisher: Callable[[], Publisher | None]) -> None:
        self.name = name
        self._publisher = publisher

    def emit(
        self,
        ctx: Context,
        event: Event,
        state: str,
        attempt: int,
        *,
        http_status: int | None = None,
        provider_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """The status of the response ``event``, with the handler's outputs."""
        ctx.emit(
            STATUS,
            status_data(
                event,
                state,
                attempt,
                http_status=http_status,
                provider_id=provider_id,
                error=error,
            ),
        )

    async def publish_now(
        self, ctx: Context, event: Event, data: dict[str, Any], attempt: int
    ) -> None:
        """Publish a ``retrying`` status now, not after the retries: whoever watches
        sees a send that is waiting. Its id derives from the response and the attempt, so
        a repeat after a crash repeats the same event."""
        publisher = self._publisher()
        if publisher is not None:
            try:
                await publisher.publish(
                    STATUS,
                    data,
                    conversation_id=event.conversation_id,
                    tenant_id=event.metadata.tenant_id,
                    cause=event,
                    event_id=uuid.uuid5(event.id, f"{self.name}/retrying/{attempt}"),
                    traceparent=ctx.traceparent,
                )
                return
            except PipelineError as exc:
                log.warning("retrying status published with the outputs instead: %s", exc)
        ctx.emit(STATUS, data)


def status_data(
    event: Event,
    state: str,
    attempt: int,
    *,
    http_status: int | None = None,
    provider_id: str | None = None,
    error: str | None = None,
    next_attempt_at: datetime | None = None,
) -> dict[str, Any]:
    """The body of a ``delivery_status`` event about the response ``event``."""
    return {
        "response_id": str(event.id),
        "channel": event["reply_to"]["channel"],
        "state": state,
        "attempt": attempt,
        "http_status": http_status,
        "provider_message_id": provider_id,
        "error": error,
        "next_attempt_at": next_attempt_at,
    }

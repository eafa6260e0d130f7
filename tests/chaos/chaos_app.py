"""The service the chaos runs kill: one output per input, poison records rejected.

``pipeline run chaos_app:build_passthrough`` (with this folder on ``PYTHONPATH``). An
input is a ``message_received`` whose text is its sequence number in its conversation
(``"17"``), or ``"poison:17"`` for a record the handler refuses: that one is
dead-lettered at once, without retries.
"""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.errors import RejectEvent
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service

SERVICE_NAME = "chaos-passthrough"
POISON = "poison:"


def build_passthrough(settings: Settings) -> Service:
    """message_received -> response_ready with the same text (the sequence number)."""
    service = Service(SERVICE_NAME, settings=settings, emits=["response_ready"])

    @service.handler("message_received")
    async def pass_through(event: Event, ctx: Context) -> None:
        text = event["text"]
        if text.startswith(POISON):
            raise RejectEvent(f"poison record {text}")
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": text})

    return service

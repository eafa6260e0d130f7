"""Conversations recorded in memory, as an evaluation reads them from Kafka: the agent's
inputs and what it emitted in answer, with a recorded set naming them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.config import Settings
from pipeline.evaluation.reader import RecordedEvents
from pipeline.evaluation.recorded_set import RecordedConversation
from pipeline.events.model import Event, Metadata
from pipeline.replay.engine import run_in_memory
from pipeline.services.agent import build
from pipeline.toolbox import builtin_tools
from pipeline.toolbox.tool_offer import StaticOffer

SETTINGS = Settings(metrics_port=0, agent={"approval_tools": {"*": ["current_time"]}})
OFFER = StaticOffer.of(builtin_tools(SETTINGS.tools))


def user_message(conversation: str, text: str, channel: str = "web") -> Event:
    metadata = Metadata.new("message_received", conversation, tenant_id="acme", producer="test")
    return Event(
        metadata,
        {
            "channel": channel,
            "sender_id": "u1",
            "sender_name": None,
            "text": text,
            "reply_to": {"channel": channel, "address": "http://127.0.0.1/cb", "thread_id": None},
            "external_id": None,
            "attachments": [],
            "attributes": {},
        },
    )


async def record(
    conversation: str, texts: Sequence[str], settings: Settings = SETTINGS, **agent: Any
) -> RecordedEvents:
    """The agent of ``settings`` answering ``texts`` in one conversation, as recorded."""
    if agent:
        settings = settings.model_copy(update={"agent": settings.agent.model_copy(update=agent)})
    inputs = [user_message(conversation, text) for text in texts]
    replayed = await run_in_memory(build(settings, tools=OFFER), inputs)
    events = sorted([*inputs, *replayed.outputs], key=lambda e: e.metadata.occurred_millis)
    named = RecordedConversation(conversation, "acme", "web", 0, {"message_received": (0, 0)})
    return RecordedEvents(named, tuple(events))

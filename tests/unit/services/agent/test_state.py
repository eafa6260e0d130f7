"""The conversation's state: it belongs to the tenant of its first event."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pipeline.errors import RejectEvent
from pipeline.events.model import Event, Metadata
from pipeline.runtime.context import Context
from pipeline.services.agent.conversation import Conversation
from tests.unit.services.agent.handler_support import (
    ADDRESS,
    SERDE,
    Harness,
    context_updated,
    message,
)


def foreign(event: Event, tenant: str, **data: Any) -> Event:
    """``event`` as if another tenant had sent it to the same conversation."""
    metadata = Metadata.new(event.type, event.conversation_id, tenant_id=tenant, producer="gw")
    return Event(metadata, {**event.data, **data})


async def test_an_event_of_another_tenant_is_rejected_and_changes_nothing() -> None:
    agent = await Harness().start()
    await agent.send(message("my card PIN is 4242"))
    before = agent.state()
    assert before["tenant"] == "t1"
    evil = {"channel": "web", "address": "https://evil/cb", "thread_id": None}
    for event in (
        foreign(message("what did I say?", external_id="m9"), "t2", reply_to=evil),
        foreign(context_updated({"x": "y"}, "Hello from t2"), "t2"),
    ):
        ctx = Context(
            event,
            service="agent",
            attempt=1,
            serde=SERDE,
            topic_for=lambda name: name,
            traceparent=None,
            logger=logging.getLogger("test"),
            partition=0,
        )
        with pytest.raises(RejectEvent) as info:
            await agent.handlers[event.type](event, ctx)
        assert "belongs to tenant 't1'" in str(info.value)
        assert ctx.outgoing == []  # no answer, no changelog write
    assert agent.state() == before
    refused = agent.registry.get_sample_value(
        "pipeline_agent_tenant_mismatch_total", {"service": "agent"}
    )
    assert refused == 2
    # The owner goes on as before, answered at its own address.
    (answer,) = await agent.send(message("and now?", external_id="m2"))
    assert answer["reply_to"] == ADDRESS


def test_state_without_a_tenant_reads_as_unowned() -> None:
    assert Conversation.from_json({"history": []}).tenant is None
    assert Conversation(tenant="t1").to_json()["tenant"] == "t1"

"""The conversation's state: it belongs to the tenant its id implies, else to its first event's."""

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


def as_tenant(event: Event, tenant: str, conversation: str) -> Event:
    """``event`` of ``tenant`` on ``conversation``."""
    metadata = Metadata.new(event.type, conversation, tenant_id=tenant, producer="gw")
    return Event(metadata, dict(event.data))


def context(event: Event) -> Context:
    return Context(
        event,
        service="agent",
        attempt=1,
        serde=SERDE,
        topic_for=lambda name: name,
        traceparent=None,
        logger=logging.getLogger("test"),
        partition=0,
    )


CHANNEL_SETTINGS = {"slack_teams": {"T1": "t1"}, "whatsapp_numbers": {"PN1": "t1"}}


@pytest.mark.parametrize(
    "conversation",
    ["web:t1:chat", "email:t1:0123456789abcdef0123", "slack:T1:C1:1.0", "whatsapp:PN1:4915"],
)
async def test_a_channels_conversation_refuses_another_tenant_even_as_its_first_event(
    conversation: str,
) -> None:
    agent = await Harness(gateway=CHANNEL_SETTINGS).start()
    for event in (
        as_tenant(message("I own this now"), "t2", conversation),
        as_tenant(context_updated({"x": "y"}, "Hello from t2"), "t2", conversation),
    ):
        ctx = context(event)
        with pytest.raises(RejectEvent) as info:
            await agent.handlers[event.type](event, ctx)
        assert "belongs to tenant 't1'" in str(info.value)
        assert "'t2'" in str(info.value)
        assert ctx.outgoing == []
    assert agent.agent.store.lookup(0, conversation) is None
    # The channel's own tenant is answered, and owns the conversation.
    (answer,) = await agent.send(as_tenant(message("hello"), "t1", conversation))
    assert answer.metadata.tenant_id == "t1"
    assert agent.agent.store.lookup(0, conversation)["tenant"] == "t1"


async def test_workspaces_and_numbers_not_listed_belong_to_the_channels_tenant() -> None:
    agent = await Harness(gateway={**CHANNEL_SETTINGS, "slack_tenant": "t3"}).start()
    event = as_tenant(message("hi"), "t1", "slack:T9:C1:1.0")
    with pytest.raises(RejectEvent, match="belongs to tenant 't3'"):
        await agent.handlers[event.type](event, context(event))
    await agent.send(as_tenant(message("hi"), "default", "whatsapp:PN9:49"))
    assert agent.agent.store.lookup(0, "whatsapp:PN9:49")["tenant"] == "default"


async def test_a_conversation_stored_as_another_tenants_goes_back_to_the_owner_its_id_names() -> (
    None
):
    agent = await Harness().start()
    taken = {"v": 1, "tenant": "t2", "history": [], "reply_to": None}
    ctx = context(as_tenant(message("x"), "t2", "web:t1:chat"))
    agent.agent.store.put(ctx, "web:t1:chat", taken)
    (answer,) = await agent.send(as_tenant(message("am I answered?"), "t1", "web:t1:chat"))
    assert answer["reply_to"] == ADDRESS
    assert agent.agent.store.lookup(0, "web:t1:chat")["tenant"] == "t1"


async def test_an_id_of_no_channel_belongs_to_its_first_events_tenant() -> None:
    agent = await Harness().start()
    await agent.send(as_tenant(message("hi"), "t2", "crm-7"))
    event = as_tenant(message("mine?"), "t1", "crm-7")
    with pytest.raises(RejectEvent, match="belongs to tenant 't2'"):
        await agent.handlers[event.type](event, context(event))

"""The webhooks service's handler, driven directly: each delivery once, tenants kept apart."""

from __future__ import annotations

import json
import logging

import pytest

from pipeline.config import Settings, bundled_dir
from pipeline.errors import RejectEvent
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from pipeline.services import webhooks
from pipeline.services.webhooks.rules import RuleSet
from pipeline.state.changelog import Restored
from pipeline.state.store import ChangelogStore

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
RULES = RuleSet.parse(
    """
rules:
  - source: crm
    event: moved
    conversation: "{target}"
    proactive_message: "Moved."
  - source: crm
    event: "*"
    proactive_message: "Hello."
"""
)


def webhook(name: str = "note", **payload: str) -> Event:
    metadata = Metadata.new("webhook_received", "web:t1:u1", tenant_id="t1", producer="gateway")
    data = {
        "source": "crm",
        "event_name": name,
        "payload_json": json.dumps({"event": name, **payload}),
        "external_id": "d",
    }
    return Event(metadata, data)


async def started() -> tuple[Service, ChangelogStore]:
    service, store = webhooks.assemble(Settings(metrics_port=0), rules=RULES)
    store._read = lambda topics, starts: {p: Restored(p, 0, 0, True) for p in starts}
    await store.assigned([("webhook_received", 0)])
    return service, store


def context(event: Event) -> Context:
    return Context(
        event,
        service="webhooks",
        attempt=1,
        serde=SERDE,
        topic_for=lambda name: name,
        traceparent=None,
        logger=logging.getLogger("test"),
        partition=0,
    )


async def test_a_delivery_handled_before_produces_nothing_and_is_counted() -> None:
    service, store = await started()
    handler = service.handlers[0].fn
    delivery = webhook()
    first = context(delivery)
    await handler(delivery, first)
    [update] = [o.event for o in first.outgoing if o.event is not None]
    assert update["proactive_message"] == "Hello."
    [record] = [o for o in first.outgoing if o.event is None]
    assert (record.topic, record.key) == ("webhook_deliveries", "web:t1:u1")
    assert store.lookup(0, "web:t1:u1") == {"v": 1, "ids": [str(delivery.id)]}

    again = context(delivery)
    await handler(delivery, again)
    assert again.outgoing == []
    labels = {"service": "webhooks", "source": "crm", "outcome": "duplicate"}
    assert service.registry.get_sample_value("pipeline_webhook_events_total", labels) == 1
    other = webhook()
    await handler(other, context(other))
    assert store.lookup(0, "web:t1:u1") == {"v": 1, "ids": [str(delivery.id), str(other.id)]}


async def test_a_rule_addressing_another_tenants_conversation_is_rejected() -> None:
    service, _ = await started()
    moved = webhook("moved", target="web:t2:u9")
    ctx = context(moved)
    with pytest.raises(RejectEvent) as info:
        await service.handlers[0].fn(moved, ctx)
    assert "tenant 't2'" in str(info.value) and "'t1'" in str(info.value)
    assert ctx.outgoing == []
    own = webhook("moved", target="web:t1:u2")
    ctx = context(own)
    await service.handlers[0].fn(own, ctx)
    [update] = [o.event for o in ctx.outgoing if o.event is not None]
    assert update.conversation_id == "web:t1:u2"

"""Replayed webhooks on a real broker: one delivery is one event, across gateway
processes and a restart of the webhooks service; a stale timestamp is refused."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx

from pipeline.channels.webhook.inbound import signature_headers
from pipeline.runtime.service import Service
from pipeline.services import webhooks
from pipeline.services.webhooks.rules import RuleSet
from tests.integration.gateway_support import record_count, serving
from tests.integration.runtime_support import read_all_async, running, settings_for

SECRET = "crm-secret"
RULES = """
rules:
  - source: crm
    event: ticket.resolved
    proactive_message: "Ticket {ticket} is resolved."
"""


async def counted(service: Service, outcome: str, wanted: float, seconds: float = 60) -> None:
    """Wait until the service counted ``wanted`` crm webhooks with ``outcome``."""
    deadline = time.monotonic() + seconds
    labels = {"service": "webhooks", "source": "crm", "outcome": outcome}
    while (
        service.registry.get_sample_value("pipeline_webhook_events_total", labels) or 0
    ) < wanted:
        assert time.monotonic() < deadline, f"{outcome} never reached {wanted}"
        await asyncio.sleep(0.05)


async def test_a_replayed_webhook_is_one_event_and_a_stale_one_none(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    received, updates, _, _ = make_topics(
        "webhook_received", "context_updated", "webhook_deliveries", "dead_letters", partitions=2
    )
    settings = settings_for(
        kafka_bootstrap,
        topic_prefix,
        gateway={
            "webhook_sources": {"crm": {"secret": SECRET, "tenants": ["t1"]}},
            "publish_timeout_seconds": 10.0,
        },
    )
    rules = RuleSet.parse(RULES)
    raw = json.dumps(
        {"event": "ticket.resolved", "conversation_id": "web:t1:u1", "id": "d-1", "ticket": 7}
    ).encode()
    signed = signature_headers(SECRET, raw, time.time())

    async def post(http: httpx.AsyncClient, headers: dict[str, str], body: bytes = raw) -> int:
        return (await http.post("/v1/webhooks/crm", content=body, headers=headers)).status_code

    first = webhooks.build(settings, rules=rules)
    async with running(first):
        # Two gateway processes (replicas, or one before and after a restart).
        async with serving(settings) as one, serving(settings) as two:
            assert await post(one, signed) == 202
            assert await post(one, signed) == 200  # the same process knows it
            assert await post(two, signed) == 202  # another one does not
            later = json.dumps({**json.loads(raw), "id": "d-2"}).encode()
            stale = signature_headers(SECRET, later, time.time() - 301)
            assert await post(one, stale, later) == 401
        await counted(first, "duplicate", 1)
        assert (await asyncio.to_thread(record_count, kafka_bootstrap, received)) == 2
        assert (await asyncio.to_thread(record_count, kafka_bootstrap, updates)) == 1

    # The webhooks service restarts (its store restored from the compacted topic), and
    # the delivery comes once more through a fresh gateway.
    second = webhooks.build(settings, rules=rules)
    async with running(second):
        async with serving(settings) as three:
            assert await post(three, signed) == 202
        await counted(second, "duplicate", 1)
        assert second.registry.get_sample_value(
            "pipeline_webhook_events_total",
            {"service": "webhooks", "source": "crm", "outcome": "matched"},
        ) in (None, 0)

    records = await read_all_async(kafka_bootstrap, received, lambda r: len(r) >= 3, 30)
    assert len({r.event().id for r in records}) == 1  # one delivery, one event id
    [update] = await read_all_async(kafka_bootstrap, updates, lambda r: len(r) >= 1, 30)
    assert update.event()["proactive_message"] == "Ticket 7 is resolved."
    assert (await asyncio.to_thread(record_count, kafka_bootstrap, updates)) == 1

"""The webhooks service on a real broker: a resolved ticket becomes a proactive message."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.events.model import Event, Metadata
from pipeline.services import webhooks
from tests.integration.runtime_support import produce_events, read_all_async, running, settings_for

REPO = Path(__file__).resolve().parents[2]


def webhook(conversation: str, source: str, name: str, payload: dict[str, Any]) -> Event:
    metadata = Metadata.new("webhook_received", conversation, tenant_id="t1", producer="gateway")
    body = {"event": name, "conversation_id": conversation, **payload}
    data = {
        "source": source,
        "event_name": name,
        "payload_json": json.dumps(body),
        "external_id": None,
    }
    return Event(metadata, data)


async def test_ticket_resolved_becomes_a_proactive_message(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    inputs, outputs, _, _ = make_topics(
        "webhook_received", "context_updated", "dead_letters", "webhook_deliveries", partitions=2
    )
    settings = settings_for(
        kafka_bootstrap,
        topic_prefix,
        webhooks={"rules_file": REPO / "deploy" / "webhooks" / "rules.yaml"},
    )
    service = webhooks.build(settings)
    resolved = webhook("conv-1", "zendesk", "ticket.resolved", {"ticket_id": "T-77"})
    ignored = webhook("conv-2", "zendesk", "ticket.created", {"ticket_id": "T-78"})
    shipped = webhook("conv-3", "shop", "order.shipped", {"order": {"id": 9, "tracking": "Z1"}})
    produce_events(kafka_bootstrap, inputs, [resolved, ignored, shipped])
    async with running(service):
        records = await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= 2, 60)
        # Nothing comes for the webhook no rule matches.
        late = await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) > 2, 2)
    assert len(late) == 2

    by_conversation = {r.event().conversation_id: r for r in records}
    assert set(by_conversation) == {"conv-1", "conv-3"}
    record = by_conversation["conv-1"]
    update = record.event()
    assert record.key == "conv-1"
    assert update["source"] == "zendesk"
    assert update["facts"] == {"ticket_id": "T-77", "ticket_status": "resolved"}
    assert "Is the issue solved for you?" in update["proactive_message"]
    assert update.metadata.causation_id == resolved.id
    assert update.metadata.correlation_id == resolved.metadata.correlation_id
    assert by_conversation["conv-3"].event()["proactive_message"] == (
        "Good news: your order 9 is on its way (tracking number Z1)."
    )

    def sample(outcome: str, source: str) -> float | None:
        return service.registry.get_sample_value(
            "pipeline_webhook_events_total",
            {"service": "webhooks", "source": source, "outcome": outcome},
        )

    assert sample("matched", "zendesk") == 1  # by the rule for any source
    assert sample("unmatched", "zendesk") == 1
    assert sample("matched", "shop") == 1

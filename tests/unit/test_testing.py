"""pipeline.testing itself: one service run by several tests, metrics per run, outputs
chained to their cause."""

from __future__ import annotations

from pipeline.services.echo import build
from pipeline.testing import TestService
from tests.unit.runtime_events import chat

ECHO = build()


async def test_an_output_is_chained_to_the_event_that_caused_it() -> None:
    async with TestService(ECHO) as svc:
        sent = await svc.send("message_received", chat("hi"), conversation_id="c1", tenant_id="t")
        reply = await svc.next_output("response_ready")
        assert svc.outputs() == [reply]  # only the declared emits are listed
    assert reply["text"] == "echo: hi"
    assert reply.metadata.causation_id == sent.id
    assert reply.metadata.correlation_id == sent.metadata.correlation_id
    assert (reply.conversation_id, reply.metadata.tenant_id) == ("c1", "t")


async def test_the_same_service_runs_again_with_metrics_of_its_own() -> None:
    async with TestService(ECHO) as svc:
        for text in ("a", "b"):
            await svc.send("message_received", chat(text))
        await svc.settle()
    handled = svc.registry.get_sample_value(
        "pipeline_events_consumed_total",
        {"service": "echo", "topic": "message_received", "event_type": "message_received"},
    )
    assert handled == 2

"""An uncertain at-most-once tool call on a real broker, the agent and the console running:
the user hears the outcome is unknown, the call waits in the console with its arguments,
an operator marks it done, and the agent answers the user with what became of it; the
decision is in the conversation's timeline with the operator's id."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from pipeline.events.model import Event
from pipeline.services.agent import assemble
from pipeline.services.console import create_app
from pipeline.services.console.view import TOPICS
from pipeline.toolbox.catalog import CatalogCodec
from tests.integration.console_support import (
    CALCULATOR,
    CONSOLE_TOPICS,
    console_settings,
    page_until,
    signed_in,
)
from tests.integration.gateway_support import serving_app
from tests.integration.runtime_support import (
    Causes,
    message,
    produce,
    produce_events,
    read_all_async,
    running,
)

AGENT_TOPICS = (
    "timer_requested",
    "context_updated",
    "agent_state_changelog",
    "response_delta",
    "history_summarized",
)
UNKNOWN = "outcome unknown: the tools service stopped while the call ran"


async def test_an_operator_marks_an_uncertain_call_done_and_the_conversation_goes_on(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    make_topics(
        *TOPICS,
        *AGENT_TOPICS,
        *CONSOLE_TOPICS,
        partitions=2,
    )
    settings = console_settings(kafka_bootstrap, topic_prefix)
    topic = topic_prefix.__add__
    codec = CatalogCodec(settings.resource_dir("schemas"))
    produce(kafka_bootstrap, topic("tool_catalog"), [("calculator", codec.encode(CALCULATOR))])

    async def one(name: str, cause: Event) -> Event:
        """The event of topic ``name`` caused by ``cause``."""
        found = await read_all_async(kafka_bootstrap, topic(name), Causes({str(cause.id)}), 60)
        (caused,) = [r.event() for r in found if r.event().metadata.causation_id == cause.id]
        return caused

    agent, _ = assemble(settings)  # the deterministic provider
    console = create_app(settings, registry=CollectorRegistry())
    async with running(agent), serving_app(console) as http:
        asking = message("conv-u", "what is 12*7?", external_id="m1")
        produce_events(kafka_bootstrap, topic("message_received"), [asking])
        called = await one("tool_called", asking)
        # What a tools service answers for an at-most-once call it found begun, never ended.
        unknown = Event(
            called.metadata.caused("tool_result", producer="tools"),
            {
                "call_id": called["call_id"],
                "tool": "calculator",
                "status": "unknown",
                "result_json": None,
                "error": UNKNOWN,
                "duration_ms": 0,
            },
        )
        produce_events(kafka_bootstrap, topic("tool_result"), [unknown])
        told = await one("response_ready", unknown)
        assert told["text"].startswith("I could not confirm whether the calculator action")

        token = await signed_in(http)
        call_id = called["call_id"]
        listed = await page_until(http, "/uncertain", lambda text: call_id in text, 60)
        assert "{&#34;expression&#34;: &#34;12*7&#34;}" in listed, "the call's arguments"
        assert UNKNOWN in listed and "conv-u" in listed
        conversation = await http.get("/conversations/conv-u")
        assert f'data-call="{call_id}"' in conversation.text

        form = {
            "outcome": "done",
            "note": "the calculator's log shows 84",
            "back": "/conversations/conv-u",
            "csrf_token": token,
        }
        answer = await http.post(f"/uncertain/{call_id}/decide", data=form)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/conversations/conv-u"
        (decided,) = [
            r.event()
            for r in await read_all_async(kafka_bootstrap, topic("tool_outcome_decided"), bool, 30)
        ]
        assert (decided["call_id"], decided["outcome"], decided["operator_id"]) == (
            call_id,
            "done",
            "ada",
        )
        assert (decided.conversation_id, decided.metadata.tenant_id) == ("conv-u", "t1")
        assert decided.metadata.causation_id == unknown.id

        # The agent goes on: a new turn, and the user hears what became of the action.
        update = await one("response_ready", decided)
        assert update["text"] == (
            "An update on the calculator action I could not confirm: a person checked, and "
            "it was done. What they found: the calculator's log shows 84"
        )
        assert update["reply_to"] == asking["reply_to"]
        await page_until(http, "/uncertain", lambda text: "No tool call waits" in text)
        again = await http.post(f"/uncertain/{call_id}/decide", data=form)
        assert again.status_code == 404

        timeline = (await http.get("/conversations/conv-u/timeline")).text
        assert "tool_outcome_decided" in timeline
        assert "calculator done by ada: the calculator&#39;s log shows 84" in timeline
        assert f'class="cause" href="#event-{unknown.id}"' in timeline

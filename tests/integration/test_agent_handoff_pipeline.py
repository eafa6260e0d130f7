"""Handoff and approvals on a real broker: a handoff survives an agent restart (state
from the changelog, still silent), operator messages reach the user's address, release
gives the model the handoff's log; an approval expires through the scheduler's durable
timer and a late decision is ignored; an approved call runs in the tools service and a
denied one is answered as denied."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from pipeline.events.model import Event, Metadata
from pipeline.llm import ChatRequest, Completion
from pipeline.llm.deterministic import DeterministicProvider
from pipeline.services import scheduler, tools
from pipeline.services.agent import assemble
from tests.integration.runtime_support import (
    Causes,
    Record,
    message,
    produce_events,
    read_all_async,
    running,
    settings_for,
)

TOPICS = (
    "message_received",
    "tool_called",
    "tool_result",
    "response_ready",
    "timer_requested",
    "timer_fired",
    "context_updated",
    "handoff_requested",
    "operator_message",
    "handoff_released",
    "operator_action_handled",
    "approval_requested",
    "approval_decided",
    "agent_state_changelog",
    "response_delta",
    "history_summarized",
    "scheduler_timers",
    "dead_letters",
    "tool_catalog",
    "tools_journal",
)
HANDOFF_TEXT = "I am passing you to a person; they will answer you here."


class Recording(DeterministicProvider):
    """The deterministic model, keeping every request it was asked."""

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        return await super().complete(request)


async def wait_until(condition: Callable[[], object], seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def operator_event(event_type: str, conversation: str, **data: Any) -> Event:
    metadata = Metadata.new(event_type, conversation, tenant_id="t1", producer="console")
    return Event(metadata, data)


def events(records: list[Record]) -> list[Event]:
    return [r.event() for r in sorted(records, key=lambda r: (r.partition, r.offset))]


def last_state(conversation: str, check: Callable[[dict[str, Any]], bool]) -> Callable[..., bool]:
    """A read_all predicate: the conversation's last changelog state passes ``check``."""

    def done(records: list[Record]) -> bool:
        mine = [r for r in records if r.key == conversation and r.value]
        return bool(mine) and check(json.loads(max(mine, key=lambda r: r.offset).value))

    return done


async def test_a_handoff_survives_an_agent_restart_and_release_gives_the_model_its_log(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    make_topics(*TOPICS, partitions=3)
    settings = settings_for(kafka_bootstrap, topic_prefix, tools={"catalog_wait_seconds": 0})
    topic = topic_prefix.__add__
    asking = message("conv-h", "I want to talk to a human", external_id="m1")
    first, _ = assemble(settings)
    async with running(first):
        produce_events(kafka_bootstrap, topic("message_received"), [asking])
        (requested,) = events(
            await read_all_async(kafka_bootstrap, topic("handoff_requested"), bool, 60)
        )
    assert (requested["requested_by"], requested.metadata.causation_id) == ("user", asking.id)

    # A new instance restores the handoff from the changelog and stays silent.
    provider = Recording()
    service, _ = assemble(settings, provider=provider)
    async with running(service):
        waiting = message("conv-h", "hello? my parcel 77 is lost", external_id="m2")
        produce_events(kafka_bootstrap, topic("message_received"), [waiting])
        logged = last_state("conv-h", lambda s: len((s.get("handoff") or {}).get("log", [])) == 1)
        await read_all_async(kafka_bootstrap, topic("agent_state_changelog"), logged, 60)
        open_handoffs = service.registry.get_sample_value(
            "pipeline_handoffs_open", {"service": "agent"}
        )
        assert open_handoffs == 1, "recounted after the restore"

        reply = operator_event("operator_message", "conv-h", operator_id="op-ada", text="On it!")
        produce_events(kafka_bootstrap, topic("operator_message"), [reply])
        sent = events(
            await read_all_async(
                kafka_bootstrap, topic("response_ready"), Causes({str(reply.id)}), 60
            )
        )
        assert [e["text"] for e in sent] == [HANDOFF_TEXT, "On it!"], "nothing for m2"
        assert sent[1]["reply_to"] == waiting["reply_to"]
        assert provider.requests == []

        release = operator_event(
            "handoff_released", "conv-h", operator_id="op-ada", note="Parcel re-sent."
        )
        produce_events(kafka_bootstrap, topic("handoff_released"), [release])
        released = last_state("conv-h", lambda s: s.get("handoff") is None)
        await read_all_async(kafka_bootstrap, topic("agent_state_changelog"), released, 60)
        after = message("conv-h", "thanks!", external_id="m3")
        produce_events(kafka_bootstrap, topic("message_received"), [after])
        answered = await read_all_async(
            kafka_bootstrap, topic("response_ready"), Causes({str(after.id)}), 60
        )
    assert events(answered)[-1]["text"] == "You said: thanks!"
    (request,) = provider.requests
    assert "User: hello? my parcel 77 is lost" in request.system
    assert "Operator op-ada: On it!" in request.system
    assert "Their note for you: Parcel re-sent." in request.system


async def test_an_approval_expires_through_the_scheduler_and_a_late_decision_is_ignored(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    make_topics(*TOPICS, partitions=2)
    settings = settings_for(
        kafka_bootstrap,
        topic_prefix,
        agent={"approval_tools": {"*": ["calculator"]}, "approval_timeout_seconds": 1},
        scheduler={"tick_seconds": 0.05},
    )
    topic = topic_prefix.__add__
    question = message("conv-x", "what is 12*7?", external_id="q1")
    service, _ = assemble(settings)

    def metric(name: str, label: str) -> float:
        key = "reason" if name.endswith("ignored_events_total") else "decision"
        found = service.registry.get_sample_value(name, {"service": "agent", key: label})
        return found or 0.0

    async with (
        running(service),
        running(scheduler.build(settings)),
        running(tools.build(settings)),  # advertises the calculator; runs nothing here
    ):
        produce_events(kafka_bootstrap, topic("message_received"), [question])
        replies = await read_all_async(
            kafka_bootstrap, topic("response_ready"), lambda r: len(r) >= 2, 60
        )
        (requested,) = events(
            await read_all_async(kafka_bootstrap, topic("approval_requested"), bool, 10)
        )
        late = operator_event(
            "approval_decided",
            "conv-x",
            approval_id=requested["approval_id"],
            decision="approved",
            operator_id="op-ada",
            arguments_json=None,
            note=None,
        )
        produce_events(kafka_bootstrap, topic("approval_decided"), [late])
        await wait_until(lambda: metric("pipeline_agent_ignored_events_total", "late_decision"), 30)
    # Stopped: whatever the agent emitted is on the broker now.
    waiting, expired = events(replies)
    assert waiting["text"].startswith("This needs a person's approval")
    assert expired["text"] == (
        "Sorry, the calculator tool failed (expired): no operator approved or denied this "
        "call within 1 seconds."
    )
    fired = events(await read_all_async(kafka_bootstrap, topic("timer_fired"), bool, 10))
    assert [f["purpose"] for f in fired] == ["approval_expiry"]
    assert metric("pipeline_approvals_total", "expired") == 1
    assert metric("pipeline_agent_ignored_events_total", "late_decision") == 1
    called = await read_all_async(kafka_bootstrap, topic("tool_called"), lambda _: False, 3)
    assert called == [], "the late approval ran nothing"


async def test_approved_calls_run_in_the_tools_service_and_denied_ones_are_answered(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    make_topics(*TOPICS, partitions=2)
    settings = settings_for(
        kafka_bootstrap,
        topic_prefix,
        agent={"approval_tools": {"*": ["calculator"]}, "approval_waiting_text": None},
    )
    topic = topic_prefix.__add__
    questions = [message("conv-ok", "what is 12*7?"), message("conv-no", "what is 6*7?")]
    async with running(assemble(settings)[0]), running(tools.build(settings)):
        produce_events(kafka_bootstrap, topic("message_received"), questions)
        asked = events(
            await read_all_async(
                kafka_bootstrap, topic("approval_requested"), lambda r: len(r) >= 2, 60
            )
        )
        by_conversation = {e.conversation_id: e for e in asked}
        decisions = [
            operator_event(
                "approval_decided",
                conversation,
                approval_id=by_conversation[conversation]["approval_id"],
                decision=decision,
                operator_id="op-ada",
                arguments_json=None,
                note=note,
            )
            for conversation, decision, note in (
                ("conv-ok", "approved", None),
                ("conv-no", "denied", "too risky"),
            )
        ]
        produce_events(kafka_bootstrap, topic("approval_decided"), decisions)
        answers = events(
            await read_all_async(
                kafka_bootstrap, topic("response_ready"), lambda r: len(r) >= 2, 60
            )
        )
    texts = {e.conversation_id: e["text"] for e in answers}
    assert texts == {
        "conv-ok": "12*7 = 84",
        "conv-no": "Sorry, the calculator tool failed (denied): an operator denied this call "
        "(too risky).",
    }
    (called,) = events(await read_all_async(kafka_bootstrap, topic("tool_called"), bool, 10))
    assert (called.conversation_id, called.metadata.causation_id) == ("conv-ok", decisions[0].id)

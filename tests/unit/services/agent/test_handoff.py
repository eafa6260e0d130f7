"""Handoff to a person, through the agent's real runtime in memory (``TestService``):
what starts one, the agent's silence meanwhile, operator messages, release."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.llm import Completion, LLMError
from pipeline.replay.diff import emission_index
from pipeline.services.agent import assemble
from pipeline.services.agent.handoff import ESCALATE, asked_for_person
from tests.unit.services.agent.agent_support import ADDRESS, ScriptedProvider, call, running_agent

HANDOFF_TEXT = "I am passing you to a person; they will answer you here."


async def test_the_users_phrase_hands_over_and_the_agent_stays_silent() -> None:
    async with running_agent() as run:
        await run.user("hello")
        asking = await run.user("Can I talk to a   HUMAN please?")
        (requested,) = run.outputs("handoff_requested")
        assert requested["requested_by"] == "user"
        assert "'talk to a human'" in requested["reason"]
        assert requested["user_text"] == "Can I talk to a   HUMAN please?"
        assert requested.metadata.causation_id == asking.id
        assert run.texts() == ["Hello! How can I help you today?", HANDOFF_TEXT]

        # While a person has it, the user's messages are kept, not answered.
        await run.user("what is 12*7?")
        await run.user("hello?")
        assert run.texts() == ["Hello! How can I help you today?", HANDOFF_TEXT]
        assert run.outputs("tool_called") == []
        log = run.state()["handoff"]["log"]
        assert [(e["role"], e["text"]) for e in log] == [
            ("user", "what is 12*7?"),
            ("user", "hello?"),
        ]
        assert run.metric("pipeline_handoffs_open") == 1
        assert run.metric("pipeline_handoffs_total", requested_by="user") == 1
        assert run.metric("pipeline_agent_ignored_events_total", reason="handed_off") == 2


async def test_phrases_are_configured_per_tenant() -> None:
    phrases = {"*": ["real person"], "acme": ["beam me up"]}
    async with running_agent(handoff_phrases=phrases) as run:
        await run.user("is there a real person?", conversation="a", tenant="acme")
        await run.user("beam me up", conversation="b", tenant="other")
        assert run.outputs("handoff_requested") == []
        await run.user("Beam me up!", conversation="a", tenant="acme")
        await run.user("a real person, please", conversation="b", tenant="other")
        assert sorted(e.conversation_id for e in run.outputs("handoff_requested")) == ["a", "b"]
    assert asked_for_person("anything", []) is None


async def test_operator_messages_reach_the_user_and_release_gives_the_model_the_log() -> None:
    provider = ScriptedProvider(Completion(text="Welcome back."), Completion(text="Fine."))
    async with running_agent(provider) as run:
        await run.user("I need to speak to a person")
        await run.user("my order 1234 never came")
        first = await run.send("operator_message", {"operator_id": "op-ada", "text": "On it."})
        await run.send("operator_message", {"operator_id": "op-ada", "text": "Refunded."})
        sent = run.outputs("response_ready")[1:]
        assert [e["text"] for e in sent] == ["On it.", "Refunded."]
        assert all(e["reply_to"] == ADDRESS and e["proactive"] for e in sent)
        assert sent[0].metadata.causation_id == first.id
        assert run.metric("pipeline_handoff_first_reply_seconds_count") == 1
        assert provider.requests == [], "the model was not asked while handed off"

        await run.send("handoff_released", {"operator_id": "op-ada", "note": "Refund done."})
        assert run.state()["handoff"] is None
        assert run.metric("pipeline_handoffs_open") == 0
        await run.user("thanks, anything else?")
        assert run.texts()[-1] == "Welcome back."
        system = provider.requests[0].system
        assert "User: my order 1234 never came" in system
        assert "Operator op-ada: On it." in system
        assert "Operator op-ada: Refunded." in system
        assert "Their note for you: Refund done." in system
        # The note is given once: the turn after is back to the plain prompt.
        await run.user("bye")
        assert "Refund done" not in provider.requests[1].system


async def test_the_model_escalates_with_its_own_tool() -> None:
    provider = ScriptedProvider(call("escalate", reason="angry customer wants a manager"))
    async with running_agent(provider) as run:
        await run.user("this is unacceptable")
        assert ESCALATE in provider.requests[0].tools
        (requested,) = run.outputs("handoff_requested")
        assert (requested["requested_by"], requested["reason"]) == (
            "model",
            "angry customer wants a manager",
        )
        assert run.outputs("tool_called") == [], "escalate is the agent's, no tools service's"
        assert run.texts() == [HANDOFF_TEXT]
        assert run.metric("pipeline_agent_turns_total", outcome="handed_off") == 1


async def test_escalate_is_not_offered_when_turned_off() -> None:
    provider = ScriptedProvider(Completion(text="hi"))
    async with running_agent(provider, escalate_tool=False) as run:
        await run.user("hello")
    assert "escalate" not in {t.name for t in provider.requests[0].tools}


async def test_a_webhook_rules_handoff_fact_hands_over() -> None:
    async with running_agent() as run:
        await run.user("hello")
        facts = {"plan": "pro", "handoff": "VIP complaint"}
        update = {"source": "crm", "facts": facts, "proactive_message": None}
        await run.send("context_updated", update)
        (requested,) = run.outputs("handoff_requested")
        assert requested["requested_by"] == "webhook"
        assert requested["reason"] == "webhook rule of crm: VIP complaint"
        assert run.state()["facts"] == {"plan": "pro"}, "the handoff fact is no fact"
        # A proactive message of a later rule waits: a person has the conversation.
        later = {"source": "crm", "facts": {}, "proactive_message": "Your plan changed"}
        await run.send("context_updated", later)
        assert "Your plan changed" not in run.texts()


async def test_failed_turns_in_a_row_hand_over() -> None:
    provider = ScriptedProvider(
        LLMError("down"), Completion(text="ok"), LLMError("down"), LLMError("down")
    )
    async with running_agent(provider, handoff_after_failed_turns=2) as run:
        await run.user("one")
        await run.user("two")  # answered: the count starts over
        await run.user("three")
        assert run.outputs("handoff_requested") == []
        await run.user("four")
        (requested,) = run.outputs("handoff_requested")
        assert requested["requested_by"] == "failed_turns"
        assert "2 failed turns in a row" in requested["reason"]
        assert run.texts()[-1] == HANDOFF_TEXT


async def test_follow_ups_are_cancelled_and_do_not_fire_while_handed_off() -> None:
    async with running_agent(follow_up_seconds=60) as run:
        await run.user("hello")
        (scheduled,) = run.outputs("timer_requested")
        await run.user("I want a human agent")
        cancel = run.outputs("timer_requested")[1]
        assert (cancel["timer_id"], cancel["action"]) == (scheduled["timer_id"], "cancel")
        assert len(run.outputs("timer_requested")) == 2, "no follow-up after the handoff text"
        # The timer fired before the cancel reached the scheduler: ignored.
        fired = {
            "timer_id": scheduled["timer_id"],
            "purpose": "follow_up",
            "due_at": scheduled["due_at"],
            "payload_json": None,
        }
        before = len(run.texts())
        await run.send("timer_fired", fired)
        assert len(run.texts()) == before


async def test_an_operator_who_writes_first_takes_the_conversation() -> None:
    async with running_agent() as run:
        await run.user("hello")
        await run.send("operator_message", {"operator_id": "op-bo", "text": "Hi, Bo here."})
        (requested,) = run.outputs("handoff_requested")
        assert (requested["requested_by"], requested["operator_id"]) == ("operator", "op-bo")
        assert run.texts()[-1] == "Hi, Bo here.", "no handoff text: the operator speaks"
        await run.user("hi Bo")
        assert run.texts()[-1] == "Hi, Bo here."


async def test_operator_events_of_another_tenant_or_conversation_are_dead_lettered() -> None:
    async with running_agent() as run:
        await run.user("talk to a person")
        await run.send("operator_message", {"operator_id": "x", "text": "hi"}, tenant="t2")
        await run.send("handoff_released", {"operator_id": "x", "note": None}, conversation="nope")
        reasons = sorted(d["error_message"] for d in run.svc.dead_letters())
        assert len(reasons) == 2
        assert "belongs to tenant 't1'" in reasons[0]
        assert "which the agent does not have" in reasons[1]
        assert run.state()["handoff"] is not None
        assert run.texts() == [HANDOFF_TEXT]
        assert run.metric("pipeline_agent_tenant_mismatch_total") == 1


async def test_a_release_without_a_handoff_is_ignored() -> None:
    async with running_agent() as run:
        await run.user("hello")
        await run.send("handoff_released", {"operator_id": "op", "note": "x"})
        assert run.state()["context_note"] is None
        assert run.metric("pipeline_agent_ignored_events_total", reason="not_handed_off") == 1


def test_the_agent_exports_the_handoff_and_approval_metrics_from_the_start() -> None:
    service, _ = assemble(Settings(metrics_port=0))
    names = {s.name for metric in service.registry.collect() for s in metric.samples}
    assert {
        "pipeline_handoffs_open",
        "pipeline_handoffs_total",
        "pipeline_handoff_first_reply_seconds_bucket",
        "pipeline_approvals_pending",
        "pipeline_approvals_total",
    } <= names
    decisions = {
        s.labels["decision"]
        for metric in service.registry.collect()
        for s in metric.samples
        if s.name == "pipeline_approvals_total"
    }
    assert decisions == {"approved", "denied", "expired"}


async def test_a_repeated_operator_message_is_sent_and_logged_once() -> None:
    async with running_agent() as run:
        await run.user("talk to a person")
        reply = await run.send("operator_message", {"operator_id": "op", "text": "Hello!"})
        await run.svc.send_event(reply)  # the same event again, as after a crash
        await run.svc.settle()
        assert run.texts() == [HANDOFF_TEXT, "Hello!"]
        assert [e["text"] for e in run.state()["handoff"]["log"]] == ["Hello!"]


async def test_every_operator_event_ends_with_the_agents_outcome() -> None:
    async with running_agent() as run:
        await run.user("talk to a person")
        wrote = await run.send("operator_message", {"operator_id": "op-ada", "text": "On it."})
        released = await run.send("handoff_released", {"operator_id": "op-ada", "note": None})
        again = await run.send("handoff_released", {"operator_id": "op-bob", "note": None})
        await run.send("operator_message", {"operator_id": "x", "text": "hi"}, conversation="no")
        outcomes = {e.metadata.causation_id: e for e in run.outputs("operator_action_handled")}
        assert set(outcomes) == {wrote.id, released.id, again.id}, "a refusal is a dead letter"
        took = outcomes[wrote.id]
        assert (took["action"], took["operator_id"], took["outcome"], took["reason"]) == (
            "operator_message",
            "op-ada",
            "accepted",
            None,
        )
        assert took["agent_version"] and took.metadata.tenant_id == wrote.metadata.tenant_id
        assert outcomes[released.id]["outcome"] == "accepted"
        ignored = outcomes[again.id]
        assert (ignored["action"], ignored["outcome"]) == ("handoff_released", "ignored")
        assert "no person has this conversation" in ignored["reason"]
        # Emitted last: what the message caused before keeps the ids earlier versions gave it.
        (sent,) = [e for e in run.outputs("response_ready") if e.metadata.causation_id == wrote.id]
        assert emission_index(sent) == 0 and emission_index(took) > emission_index(sent)

"""The agent's model calls through its journal, run by the real runtime in memory: a
completion recorded is reused when its event is handled again (after an aborted
transaction, a handler retry), with the same tool-call ids and outputs; a call whose
answer was never recorded is made again and counted as repeated."""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import KafkaError
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.journal import INTENT, Step, step_id
from pipeline.llm import Completion
from pipeline.llm.base import Usage
from pipeline.services.agent import assemble
from pipeline.testing import TestService
from pipeline.toolbox import builtin_tools
from pipeline.toolbox.tool_offer import StaticOffer
from tests.unit.services.agent.agent_support import ADDRESS, ScriptedProvider, call

EOS = {"processing_guarantee": "exactly_once", "commit_interval_seconds": 3600.0}
ABORTABLE = KafkaError(KafkaError._STATE, "a broker failed", txn_requires_abort=True)


def agent_service(provider: Any, **settings: Any) -> tuple[Any, Any]:
    config = Settings(metrics_port=0, max_retries=0, **settings)
    offer = StaticOffer.of(builtin_tools(config.tools))
    return assemble(config, provider=provider, tools=offer, registry=CollectorRegistry())


def user(text: str) -> dict[str, Any]:
    return {"channel": "web", "sender_id": "u1", "text": text, "reply_to": ADDRESS}


def journal_steps(svc: TestService) -> list[dict[str, Any]]:
    topic = svc.settings.topic("agent_journal")
    values = [r.value() for r in svc.broker.records(topic)]
    return [s for v in values if v for s in json.loads(v)["steps"]]


def reused(service: Any) -> float:
    labels = {"service": "agent", "journal": "agent_journal", "kind": "model", "outcome": "reused"}
    return service.registry.get_sample_value("pipeline_journal_steps_total", labels) or 0.0


async def test_an_aborted_transaction_reuses_the_recorded_completion() -> None:
    provider = ScriptedProvider(call("current_time", call_id="model-1"))
    service, _agent = agent_service(provider, **EOS)
    async with TestService(service, **EOS) as svc:
        await svc.send("message_received", user("what time is it?"), conversation_id="c1")
        await svc.settle()
        assert len(provider.requests) == 1
        svc.broker.fail_next_commit(ABORTABLE)
        await svc.commit()  # aborted: the event is handled again from the committed offsets
        assert svc.broker.transactions["aborted"] == 1
        await svc.settle()
        await svc.commit()
        (called,) = svc.outputs("tool_called")
    assert len(provider.requests) == 1  # the model was not asked again
    assert reused(service) == 1
    # The call id is derived from the handled event, not the model's own: the same both
    # times, so the tools service and its journal know the call.
    assert called["call_id"] != "model-1" and called["call_id"].startswith("call_")
    states = [s["state"] for s in journal_steps(svc)]
    assert states == ["intent", "done"]  # written once each, outside the transaction


async def test_a_call_whose_answer_was_not_recorded_is_made_again() -> None:
    provider = ScriptedProvider(Completion(text="hello again"))
    service, agent = agent_service(provider)
    async with TestService(service) as svc:
        event = await svc.send("message_received", user("hi"), conversation_id="c1")
        # As if an earlier run had recorded the intent and died before the answer came:
        # that step is in the journal with no result when the event is handled.
        intent = Step(step_id(event.id, "model"), "model", INTENT, ("t", 0, 0), 0)
        journal = agent.model.journal
        assert journal is not None
        for partition in journal.store.partitions:
            journal.store._partitions[partition].values["c1"] = {
                "v": 1,
                "steps": [intent.to_json()],
            }
        await svc.settle()
        (answer,) = svc.outputs("response_ready")
    assert answer["text"] == "hello again"
    labels = {"service": "agent", "journal": "agent_journal", "kind": "model"}
    registry = service.registry
    assert (
        registry.get_sample_value("pipeline_journal_steps_total", {**labels, "outcome": "repeated"})
        == 1
    )
    steps = journal_steps(svc)
    assert steps[-1]["state"] == "done" and steps[-1]["attempt"] == 2


async def test_the_deterministic_provider_keeps_no_journal() -> None:
    _, agent = agent_service(None)
    assert agent.model.journal is None
    _, agent = agent_service(None, agent={"journal_model_calls": "always"})
    assert agent.model.journal is not None


async def test_tokens_are_counted_per_tenant_and_a_reused_completion_costs_none() -> None:
    provider = ScriptedProvider(Completion(text="hi", usage=Usage(7, 3)))
    service, _agent = agent_service(provider, **EOS)
    async with TestService(service, **EOS) as svc:
        await svc.send("message_received", user("hello"), conversation_id="c1", tenant_id="acme")
        await svc.settle()
        svc.broker.fail_next_commit(ABORTABLE)
        await svc.commit()
        await svc.settle()
        await svc.commit()
    value = service.registry.get_sample_value
    labels = {"service": "agent", "tenant": "acme"}
    assert value("pipeline_agent_llm_tokens_total", {**labels, "kind": "prompt"}) == 7
    assert value("pipeline_agent_llm_tokens_total", {**labels, "kind": "completion"}) == 3

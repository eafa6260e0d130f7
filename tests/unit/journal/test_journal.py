"""The journal through the real runtime in memory: steps recorded at once (outside the
handler's outputs), a step of a committed event no longer kept, a conversation whose
steps are all committed tombstoned by the sweep; a journal that keeps committed steps,
and one that reads the values of the store it replaced."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from pipeline.events.model import Event, Metadata
from pipeline.journal import DONE, Journal, Step, step_id
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from pipeline.testing import TestService
from tests.unit.runtime_events import chat, reply
from tests.unit.services.agent.handler_support import SERDE, empty_changelog

JOURNAL = "tools_journal"


def journaled(calls: list[str], **options: Any) -> tuple[Service, Journal]:
    """Each message is one outside call, made once per event however often it is handled
    (``options`` are the journal's)."""
    service = Service("journaled", emits=["response_ready"])
    journal = Journal(service, JOURNAL, **{"sweep_seconds": 3600, **options})

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        sid = step_id(event.id, "call")
        known = journal.find(ctx, sid)
        if known is not None and known.state == DONE and known.result is not None:
            text = str(known.result["text"])
        else:
            step = await journal.intent(ctx, sid, "call", key=str(event.id))
            calls.append(event["text"])
            text = event["text"].upper()
            await journal.done(ctx, step, {"text": text})
        ctx.emit("response_ready", reply(text))

    return service, journal


def values(svc: TestService) -> list[tuple[str, Any]]:
    topic = svc.settings.topic(JOURNAL)
    return [
        ((r.key() or b"").decode(), None if r.value() is None else json.loads(r.value() or b""))
        for r in svc.broker.records(topic)
    ]


async def test_steps_are_written_at_once_and_read_back_after_a_restart() -> None:
    calls: list[str] = []
    service, _ = journaled(calls)
    async with TestService(service) as svc:
        await svc.send("message_received", chat("hi"), conversation_id="c1")
        await svc.settle()
        written = values(svc)
    assert [v["steps"][-1]["state"] for _, v in written] == ["intent", "done"]
    # A new instance on the same broker, with nothing committed yet by the first, reads
    # the journal back and does not make the call again.
    broker = svc.broker
    service, _ = journaled(calls)
    broker.offsets.clear()  # as if the first had died before committing
    async with TestService(service, broker=broker) as again:
        await again.settle()
        assert [e["text"] for e in again.outputs("response_ready")] == ["HI", "HI"]
    assert calls == ["hi"]


async def test_committed_steps_are_dropped_and_their_conversation_tombstoned() -> None:
    calls: list[str] = []
    service, journal = journaled(calls)
    async with TestService(service) as svc:
        await svc.send("message_received", chat("one"), conversation_id="c1")
        await svc.settle()
        await svc.commit()
        await svc.until(lambda: _confirmed(svc), "the commit to be confirmed")
        # A second event of the conversation: the first's steps are no longer kept.
        await svc.send("message_received", chat("two"), conversation_id="c1")
        await svc.settle()
        last = values(svc)[-1][1]
        assert len({s["id"] for s in last["steps"]}) == 1  # only the second event's step
        await svc.commit()
        await svc.until(lambda: _confirmed(svc, 2), "the second commit")
        assert await journal.sweep() == 1
        key, tombstone = values(svc)[-1]
        assert (key, tombstone) == ("c1", None)
        assert await journal.sweep() == 0  # nothing left to expire
        metric = svc.runner.service.registry.get_sample_value(
            "pipeline_journal_expired_conversations_total",
            {"service": "journaled", "journal": JOURNAL},
        )
        assert metric == 1
    assert calls == ["one", "two"]


def _confirmed(svc: TestService, offset: int = 1) -> bool:
    return any(p.durable == offset for p in svc.runner.partitions.values())


async def test_without_a_runtime_steps_go_with_the_handlers_outputs() -> None:
    calls: list[str] = []
    service, journal = journaled(calls)
    assert service.running is None
    journal.store._read = empty_changelog  # nothing to restore
    await journal.store.assigned([("message_received", 0)])
    event = Event(Metadata.new("message_received", "c1", tenant_id="t", producer="x"), chat("a"))
    ctx = Context(
        event,
        service="journaled",
        attempt=1,
        serde=SERDE,
        topic_for=lambda name: name,
        traceparent=None,
        logger=logging.getLogger("test"),
    )
    await service.handlers[0].fn(event, ctx)
    kinds = [o.event_type for o in ctx.outgoing]
    assert kinds == [JOURNAL, JOURNAL, "response_ready"]


async def test_without_expiry_the_newest_steps_are_kept_after_their_events_committed() -> None:
    calls: list[str] = []
    service, journal = journaled(calls, keep=2, expire_committed=False)
    assert journal._sweep_forever not in service.background_tasks, "nothing to sweep"
    async with TestService(service) as svc:
        for n, text in enumerate(("one", "two", "three"), start=1):
            await svc.send("message_received", chat(text), conversation_id="c1")
            await svc.settle()
            await svc.commit()
            await svc.until(lambda n=n: _confirmed(svc, n), f"commit {n} to be confirmed")
        assert await journal.sweep() == 0
        [partition] = [p for p in journal.store.partitions if journal.store.lookup(p, "c1")]
        kept = journal.steps(partition, "c1")
        assert [(s.state, (s.result or {}).get("text")) for s in kept] == [
            ("done", "TWO"),
            ("done", "THREE"),
        ]
        assert journal._locks == {}, "a conversation's lock is dropped once unused"
    assert None not in [value for _, value in values(svc)], "nothing tombstoned"
    assert calls == ["one", "two", "three"]


def calls_before_the_journal(value: Mapping[str, Any]) -> list[Step]:
    """The store a journal replaced: ``{"calls": {event id: text}}``, every call done."""
    return [
        Step(step_id(event_id, "call"), "call", DONE, ("", -1, -1), 0, result={"text": text})
        for event_id, text in value["calls"].items()
    ]


async def test_a_value_of_the_store_it_replaced_is_read_and_written_again_in_its_form() -> None:
    calls: list[str] = []
    service, _ = journaled(calls, upgrade=calls_before_the_journal)
    svc = TestService(service)
    event = await svc.send("message_received", chat("hi"), conversation_id="c1")
    old = {"calls": {str(event.id): "RECORDED BEFORE"}}
    svc.broker.append(svc.settings.topic(JOURNAL), "c1", json.dumps(old).encode())
    async with svc:
        await svc.settle()
        # Read through the upgrade: the recorded result is used, the call not made.
        assert [e["text"] for e in svc.outputs("response_ready")] == ["RECORDED BEFORE"]
        await svc.send("message_received", chat("next"), conversation_id="c1")
        await svc.settle()
    assert calls == ["next"]
    key, last = values(svc)[-1]
    assert key == "c1" and last["v"] == 1 and "calls" not in last
    before, after = last["steps"]
    assert (before["id"], before["state"]) == (step_id(event.id, "call"), "done")
    assert (before["result"]["text"], after["result"]["text"]) == ("RECORDED BEFORE", "NEXT")

"""One record's handling, run through the real runtime in memory: retries, dead letters,
rejection, undecodable records and emits of unknown or undeclared types."""

from __future__ import annotations

from collections import Counter

from pipeline.errors import RejectEvent
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from pipeline.testing import TestService
from tests.unit.runtime_events import chat, reply


async def test_a_failing_handler_is_retried_then_dead_lettered_while_others_flow() -> None:
    service = Service("flaky", emits=["response_ready"])
    attempts: Counter[str] = Counter()

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        attempts[event.conversation_id] += 1
        if event["text"] == "poison":
            raise RuntimeError("cannot handle poison")
        ctx.emit("response_ready", reply(event["text"]))

    async with TestService(service, max_retries=2) as svc:
        await svc.send("message_received", chat("poison"), conversation_id="bad")
        await svc.send("message_received", chat("fine"), conversation_id="good")
        await svc.settle()
        [letter] = svc.dead_letters()
        [output] = svc.outputs("response_ready")

    assert attempts == {"bad": 3, "good": 1}
    assert letter["stage"] == "handler"
    assert letter["attempts"] == 3
    assert letter["error_type"] == "RuntimeError"
    assert letter["error_message"] == "cannot handle poison"
    assert letter["conversation_id"] == "bad"
    assert letter["source_topic"] == "message_received"
    assert output["text"] == "fine"


async def test_a_handler_that_recovers_emits_once() -> None:
    service = Service("recovering")
    seen: list[int] = []

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        seen.append(ctx.attempt)
        ctx.emit("response_ready", reply(f"attempt {ctx.attempt}"))
        if ctx.attempt < 3:
            raise ConnectionError("flaky upstream")

    async with TestService(service, max_retries=3) as svc:
        await svc.send("message_received", chat("hi"))
        await svc.settle()
        outputs = svc.outputs("response_ready")
        letters = svc.dead_letters()

    assert seen == [1, 2, 3]
    assert [o["text"] for o in outputs] == ["attempt 3"]  # failed attempts emit nothing
    assert letters == []


async def test_reject_event_dead_letters_at_once_and_keeps_what_was_emitted() -> None:
    service = Service("rejecting")
    calls = 0

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        nonlocal calls
        calls += 1
        ctx.emit("response_ready", reply("could not deliver"))
        raise RejectEvent("the channel answered 400", stage="delivery")

    async with TestService(service, max_retries=5) as svc:
        await svc.send("message_received", chat("hi"))
        await svc.settle()
        [letter] = svc.dead_letters()
        [output] = svc.outputs("response_ready")

    assert calls == 1
    assert (letter["stage"], letter["attempts"]) == ("delivery", 1)
    assert letter["error_message"] == "the channel answered 400"
    assert output["text"] == "could not deliver"


async def test_undecodable_bytes_are_dead_lettered_with_the_original_value() -> None:
    service = Service("strict")
    handled = 0

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        nonlocal handled
        handled += 1

    async with TestService(service) as svc:
        await svc.send_raw("message_received", b"\xc3\x01not avro", conversation_id="c9")
        await svc.send("message_received", chat("fine"), conversation_id="c9")
        await svc.settle()
        [letter] = svc.dead_letters()

    assert handled == 1
    assert (letter["stage"], letter["attempts"]) == ("decode", 0)
    assert letter["value"] == b"\xc3\x01not avro"
    assert letter["key"] == b"c9"


async def test_an_emit_of_an_unknown_type_dead_letters_at_once_with_the_reason() -> None:
    service = Service("typo")
    calls = 0

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        nonlocal calls
        calls += 1
        ctx.emit("response_ready", reply("first"))
        ctx.emit("respons_ready", reply("second"))

    async with TestService(service, max_retries=3) as svc:
        await svc.send("message_received", chat("hi"))
        letter = await svc.next_dead_letter()
        await svc.settle()
        outputs = svc.outputs("response_ready")

    assert calls == 1
    assert letter["attempts"] == 1
    assert letter["error_type"] == "EventTypeError"
    assert "unknown event type 'respons_ready'" in letter["error_message"]
    assert "response_ready" in letter["error_message"]  # the known types are listed
    assert outputs == []  # the failed attempt emits nothing


async def test_an_emit_of_an_undeclared_type_dead_letters_at_once() -> None:
    service = Service("narrow", emits=["response_ready"])

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        ctx.emit("tool_called", {"tool": "x", "arguments": "{}", "call_id": "1"})

    async with TestService(service, max_retries=3) as svc:
        await svc.send("message_received", chat("hi"))
        await svc.settle()
        [letter] = svc.dead_letters()

    assert letter["attempts"] == 1
    assert "'tool_called', which it does not declare" in letter["error_message"]
    assert "emits: response_ready" in letter["error_message"]

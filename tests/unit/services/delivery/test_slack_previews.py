"""Slack answers shown while they are written, against a Slack stand-in over real HTTP:
one chat.postMessage, then at most one chat.update per interval, the answer last (as an
update of the same message, its response id in the metadata); an answer that comes
before its deltas is posted and the late deltas ignored; a stream that ends without an
answer has its message deleted; a restart between the preview and the answer still
updates the preview's message; no preview without the setting."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from pipeline.config import Settings
from pipeline.services.delivery import build
from pipeline.testing import TestService
from tests.app_server import serve_app

SLACK = {"channel": "slack", "address": "C042", "thread_id": None}
INTERVAL = 0.3


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    at: float


@dataclass
class SlackStandIn:
    """chat.postMessage, chat.update and chat.delete, each call recorded with its time."""

    calls: list[Call] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/api/{method}")
        async def call(method: str, request: Request) -> JSONResponse:
            body = await request.json()
            self.calls.append(Call(method, body, time.monotonic()))
            ts = body.get("ts") or f"{1700000000 + len(self.calls)}.000100"
            return JSONResponse({"ok": True, "channel": body.get("channel"), "ts": ts})

        return app

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]


@pytest.fixture
def slack() -> Iterator[tuple[SlackStandIn, str]]:
    stand_in = SlackStandIn()
    with serve_app(stand_in.app(), "/api") as base_url:
        yield stand_in, base_url


def delivery(base_url: str, **section: Any) -> Any:
    values = {
        "slack_base_url": base_url,
        "slack_bot_token": "xoxb-test",
        "api_allowed_networks": ["127.0.0.0/8"],  # the stand-in is on this machine
        **section,
    }
    return build(Settings(metrics_port=0, delivery=values))


def delta(stream: uuid.UUID, sequence: int, text: str, interrupted: bool = False) -> dict[str, Any]:
    return {
        "stream_id": stream,
        "sequence": sequence,
        "text": text,
        "interrupted": interrupted,
        "reply_to": SLACK,
        "ingress_at": None,
    }


def answer(text: str, stream: uuid.UUID | None) -> dict[str, Any]:
    return {"reply_to": SLACK, "text": text, "stream_id": stream}


async def write(svc: TestService, stream: uuid.UUID, words: list[str], pause: float) -> None:
    for sequence, word in enumerate(words):
        await svc.send("response_delta", delta(stream, sequence, word), conversation_id="c1")
        await asyncio.sleep(pause)
    await svc.settle()


async def test_one_post_then_bounded_updates_then_the_answer(
    slack: tuple[SlackStandIn, str],
) -> None:
    stand_in, base_url = slack
    stream = uuid.uuid4()
    words = [f"w{i} " for i in range(30)]
    async with TestService(delivery(base_url, slack_preview_interval_seconds=INTERVAL)) as svc:
        started = time.monotonic()
        await write(svc, stream, words, 0.05)  # 1.5 s of writing
        final = await svc.send(
            "response_ready", answer("The whole answer.", stream), conversation_id="c1"
        )
        await svc.settle()
        took = time.monotonic() - started
        (status,) = svc.outputs("delivery_status")
    methods = stand_in.methods()
    assert methods[0] == "chat.postMessage"
    assert methods.count("chat.postMessage") == 1
    assert set(methods[1:]) == {"chat.update"}
    updates = [c for c in stand_in.calls if c.method == "chat.update"]
    # At most one update per interval, the answer's included, and the answer last.
    gaps = [b.at - a.at for a, b in itertools.pairwise(updates)]
    assert all(gap >= INTERVAL * 0.95 for gap in gaps), gaps
    assert 2 <= len(updates) <= took / INTERVAL + 1
    ts = "1700000001.000100"  # the stand-in's ts of the first message
    assert all(u.body["ts"] == ts and u.body["channel"] == "C042" for u in updates)
    last = updates[-1].body
    assert last["text"] == "The whole answer."
    assert last["metadata"]["event_payload"] == {"response_id": str(final.id)}
    first = stand_in.calls[0].body
    assert first["text"] == "w0 …"
    assert first["metadata"]["event_payload"] == {"stream_id": str(stream)}
    assert updates[0].body["text"].startswith("w0 w1 ")
    assert updates[0].body["text"].endswith(" …")
    assert status["state"] == "sent" and status["provider_message_id"] == ts


async def test_an_answer_before_its_deltas_is_posted_and_late_deltas_are_ignored(
    slack: tuple[SlackStandIn, str],
) -> None:
    stand_in, base_url = slack
    stream = uuid.uuid4()
    async with TestService(delivery(base_url, slack_preview_interval_seconds=INTERVAL)) as svc:
        await svc.send("response_ready", answer("Quick answer.", stream), conversation_id="c1")
        await svc.settle()
        await write(svc, stream, ["Quick ", "answer."], 0.0)
    assert stand_in.methods() == ["chat.postMessage"]
    assert stand_in.calls[0].body["text"] == "Quick answer."


async def test_a_stream_that_ends_without_an_answer_has_its_message_deleted(
    slack: tuple[SlackStandIn, str],
) -> None:
    stand_in, base_url = slack
    stream = uuid.uuid4()
    async with TestService(delivery(base_url, slack_preview_interval_seconds=INTERVAL)) as svc:
        await write(svc, stream, ["Let me ", "check."], 0.0)
        await svc.send(
            "response_delta", delta(stream, 2, "", interrupted=True), conversation_id="c1"
        )
        await svc.settle()
        await write(svc, stream, ["late"], 0.0)
    assert stand_in.methods() == ["chat.postMessage", "chat.delete"]
    assert stand_in.calls[1].body == {"channel": "C042", "ts": "1700000001.000100"}


async def test_after_a_restart_the_answer_still_updates_the_preview(
    slack: tuple[SlackStandIn, str],
) -> None:
    stand_in, base_url = slack
    stream = uuid.uuid4()
    service = delivery(base_url, slack_preview_interval_seconds=INTERVAL)
    async with TestService(service) as first:
        await write(first, stream, ["Half ", "an "], 0.0)
        await first.commit()
    async with TestService(
        delivery(base_url, slack_preview_interval_seconds=INTERVAL), broker=first.broker
    ) as again:
        await again.settle()
        await write(again, stream, ["Half ", "an ", "answer"], 0.0)  # written again, from 0
        await again.send("response_ready", answer("Half an answer.", stream), conversation_id="c1")
        await again.settle()
    methods = stand_in.methods()
    assert methods.count("chat.postMessage") == 1
    assert methods[-1] == "chat.update"
    assert stand_in.calls[-1].body["text"] == "Half an answer."
    assert stand_in.calls[-1].body["ts"] == "1700000001.000100"


async def test_without_the_setting_delivery_does_not_read_deltas(
    slack: tuple[SlackStandIn, str],
) -> None:
    _, base_url = slack
    service = delivery(base_url)
    assert [h.event_type for h in service.handlers] == ["response_ready"]

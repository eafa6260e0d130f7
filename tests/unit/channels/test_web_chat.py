"""Web chat without a broker: chat tokens, messages without a callback URL, stream
positions, the chat page's headers, and how the delivery adapter picks callback or stream."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from pipeline.channels.outbound import Outcome, Sent
from pipeline.channels.web import chat_token
from pipeline.channels.web import inbound as web
from pipeline.channels.web.chat_token import ChatScope
from pipeline.channels.web.stream_log import Position
from pipeline.channels.web.stream_sender import WebReplies, streamed
from pipeline.dev.stack.local import DEVELOPMENT_CHAT_SECRET, LocalStack
from pipeline.errors import InboundRejected
from pipeline.events.model import Event, Metadata
from pipeline.services.gateway import create_app
from tests.unit.services.gateway.test_app import gateway_config

SECRET = "unit-chat-secret"
SCOPE = ChatScope("acme", "ada", "web:acme:ada", 2_000_000_000)


def test_a_chat_token_carries_its_scope_and_is_refused_when_forged_expired_or_mangled() -> None:
    token = chat_token.issue(SECRET, SCOPE)
    assert chat_token.verify(SECRET, token, 1_900_000_000) == SCOPE
    refusals = {
        "forged": (chat_token.issue("other", SCOPE), 1_900_000_000),
        "expired": (token, 2_000_000_000),
        "missing": ("", 0),
        "mangled": (token[:-3] + "abc", 0),
        "not base64": ("v1.!!!.abc", 0),
        "other version": ("v2" + token[2:], 0),
        "not ascii": (token + "é", 0),
    }
    for case, (presented, now) in refusals.items():
        with pytest.raises(InboundRejected) as refused:
            chat_token.verify(SECRET, presented, now)
        assert refused.value.status == 401, case


def test_a_web_message_without_callback_url_is_answered_on_the_stream() -> None:
    body = json.dumps({"user_id": "u1", "text": "hi"}).encode()
    (inbound,) = web.parse(body, "acme").events
    assert inbound.data["reply_to"] == {"channel": "web", "address": "", "thread_id": None}
    chat = web.parse_chat(json.dumps({"text": "hi", "message_id": "m1"}).encode(), SCOPE)
    (message,) = chat.events
    assert (message.conversation_id, message.tenant_id) == ("web:acme:ada", "acme")
    assert message.data["sender_id"] == "ada" and message.data["reply_to"]["address"] == ""
    with pytest.raises(InboundRejected) as refused:
        web.parse_chat(json.dumps({"text": "hi", "user_id": "mallory"}).encode(), SCOPE)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("text", "position"),
    [("3-42", Position(3, 42)), (" 0-0 ", Position(0, 0)), ("3-", None), ("a-1", None)],
)
def test_stream_event_ids_are_positions(text: str, position: Position | None) -> None:
    assert Position.parse(text) == position
    if position is not None:
        assert Position.parse(str(position)) == position


async def test_the_chat_page_is_served_with_a_strict_content_security_policy() -> None:
    app = create_app(gateway_config(chat_token_secret=SECRET))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        page = await client.get("/chat")
        script = await client.get("/chat/chat.js")
        tokens = await client.post(
            "/v1/web/chat-tokens",
            json={"user_id": "ada", "ttl_seconds": 10**9},
            headers={"Authorization": "Bearer tok-acme"},
        )
        other = await client.post(
            "/v1/web/chat-tokens",
            json={"user_id": "ada", "conversation_id": "web:globex:x"},
            headers={"Authorization": "Bearer tok-acme"},
        )
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and '<script src="/chat/chat.js"' in page.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert "textContent" in script.text and "innerHTML" not in script.text
    assert tokens.status_code == 201
    issued = tokens.json()
    scope = chat_token.verify(SECRET, issued["token"], 0)
    assert scope.conversation_id == issued["conversation_id"] == "web:acme:ada"
    assert scope.expires_at == issued["expires_at"] <= time.time() + 3600, "capped to the ttl"
    assert other.status_code == 403 and other.json()["error"]


async def test_chat_tokens_are_not_issued_without_a_secret() -> None:
    app = create_app(gateway_config())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        answer = await client.post(
            "/v1/web/chat-tokens",
            json={"user_id": "a"},
            headers={"Authorization": "Bearer tok-acme"},
        )
    assert answer.status_code == 404 and "not configured" in answer.json()["error"]


class _Recording:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, response: Event) -> Outcome:
        self.sent.append(str(response["reply_to"]["address"]))
        return Sent("x")


def _response(address: str) -> Event:
    metadata = Metadata.new("response_ready", "web:acme:ada", tenant_id="acme", producer="t")
    reply_to: dict[str, Any] = {"channel": "web", "address": address, "thread_id": None}
    return Event(metadata, {"reply_to": reply_to, "text": "hi"})


async def test_the_web_adapter_posts_to_a_callback_url_and_streams_without_one() -> None:
    callbacks, stream = _Recording(), _Recording()
    replies = WebReplies(callbacks, stream)  # type: ignore[arg-type]
    await replies.send(_response("https://cb.example/x"))
    await replies.send(_response(""))
    assert callbacks.sent == ["https://cb.example/x"] and stream.sent == [""]
    assert streamed(_response("")) and not streamed(_response("https://cb.example/x"))
    assert await replies.find_sent(_response("https://cb.example/x"), 0) is None


def test_pipeline_up_offers_a_chat_url_with_a_token_for_a_development_user() -> None:
    stack = LocalStack({"PIPELINE_GATEWAY__PORT": "8123"})
    url = stack.chat_url()
    assert url is not None and url.startswith("http://127.0.0.1:8123/chat#token=")
    scope = chat_token.verify(DEVELOPMENT_CHAT_SECRET, url.split("#token=", 1)[1], time.time())
    assert scope.conversation_id == "web:demo:you"

"""The OpenAI-compatible provider against a local HTTP server speaking chat completions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from pipeline.config.sections import LLMSettings, ToolsSettings
from pipeline.llm import (
    ChatMessage,
    ChatRequest,
    LLMError,
    OpenAIProvider,
    ToolCall,
    create_provider,
)
from pipeline.toolbox import builtin_tools
from pipeline.toolbox.tool_offer import StaticOffer

# What the tools service serves and advertises by default.
BUILT_IN_TOOLS = StaticOffer.of(builtin_tools(ToolsSettings())).specs


@dataclass
class Reply:
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeOpenAI:
    """A chat-completions server: answers with scripted replies, records every request."""

    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> JSONResponse:
            self.requests.append(await request.json())
            self.authorizations.append(request.headers.get("authorization"))
            reply = self.replies.pop(0) if self.replies else Reply(500, {"error": "no script"})
            if reply.delay:
                await asyncio.sleep(reply.delay)
            return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

        return app


def completion(message: dict[str, Any], prompt: int = 11, completion_: int = 7) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion_,
            "total_tokens": prompt + completion_,
        },
    }


def text_reply(text: str, **usage: int) -> Reply:
    return Reply(body=completion({"role": "assistant", "content": text}, **usage))


@pytest.fixture
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    """A uvicorn server on a free 127.0.0.1 port; yields the fake and its /v1 base URL."""
    server_state = FakeOpenAI()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        server_state.app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "fake chat-completions server did not start"
        time.sleep(0.01)
    yield server_state, f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(10)


def provider_for(base_url: str, registry: CollectorRegistry, **overrides: Any) -> OpenAIProvider:
    settings = LLMSettings(
        provider="openai",
        base_url=base_url,
        model="test-model",
        api_key="sk-test",
        backoff_initial_seconds=0.01,
        backoff_max_seconds=0.05,
        **{"allowed_networks": ["127.0.0.0/8"], **overrides},
    )
    provider = create_provider(settings, registry=registry, service="agent")
    assert isinstance(provider, OpenAIProvider)
    return provider


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(
        name, {"service": "agent", "provider": "openai", "model": "test-model", **labels}
    )
    return value or 0.0


async def test_a_tool_call_round_trip(fake: tuple[FakeOpenAI, str]) -> None:
    server, base_url = fake
    tool_call = {
        "id": "call_abc",
        "type": "function",
        "function": {"name": "calculator", "arguments": '{"expression": "12*7"}'},
    }
    server.replies = [
        Reply(body=completion({"role": "assistant", "content": None, "tool_calls": [tool_call]})),
        text_reply("12*7 = 84"),
    ]
    registry = CollectorRegistry()
    provider = provider_for(base_url, registry)
    question = ChatMessage("user", "what is 12*7?")
    try:
        first = await provider.complete(
            ChatRequest(
                (question,), system="Be brief.", facts={"plan": "pro"}, tools=BUILT_IN_TOOLS
            )
        )
        assert first.text is None
        assert first.tool_calls == (ToolCall("call_abc", "calculator", {"expression": "12*7"}),)

        second = await provider.complete(
            ChatRequest(
                (
                    question,
                    ChatMessage("assistant", None, tool_calls=first.tool_calls),
                    ChatMessage(
                        "tool", '{"value": 84}', tool_call_id="call_abc", name="calculator"
                    ),
                ),
                system="Be brief.",
                tools=BUILT_IN_TOOLS,
            )
        )
    finally:
        await provider.aclose()
    assert second.text == "12*7 = 84"
    assert not second.tool_calls

    sent_first, sent_second = server.requests
    assert server.authorizations == ["Bearer sk-test", "Bearer sk-test"]
    assert sent_first["model"] == "test-model"
    assert sent_first["tool_choice"] == "auto"
    assert [t["function"]["name"] for t in sent_first["tools"]] == [
        "calculator",
        "current_time",
        "knowledge_lookup",
    ]
    assert sent_first["tools"][0]["type"] == "function"
    assert sent_first["tools"][0]["function"]["parameters"]["required"] == ["expression"]
    system = sent_first["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("Be brief.")
    assert "- plan: pro" in system["content"]
    assert sent_first["messages"][1] == {"role": "user", "content": "what is 12*7?"}
    assistant, tool = sent_second["messages"][2:]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"][0]["id"] == "call_abc"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"expression": "12*7"}
    assert tool == {"role": "tool", "tool_call_id": "call_abc", "content": '{"value": 84}'}


async def test_token_usage_and_latency_are_counted(fake: tuple[FakeOpenAI, str]) -> None:
    server, base_url = fake
    server.replies = [text_reply("a", prompt=10, completion_=3), text_reply("b", prompt=5)]
    registry = CollectorRegistry()
    provider = provider_for(base_url, registry)
    try:
        for _ in range(2):
            await provider.complete(ChatRequest((ChatMessage("user", "hi"),)))
    finally:
        await provider.aclose()
    assert sample(registry, "pipeline_llm_tokens_total", kind="prompt") == 15
    assert sample(registry, "pipeline_llm_tokens_total", kind="completion") == 10
    assert sample(registry, "pipeline_llm_request_duration_seconds_count") == 2
    assert sample(registry, "pipeline_llm_request_duration_seconds_sum") > 0
    assert sample(registry, "pipeline_llm_requests_total", outcome="ok") == 2
    assert "tools" not in server.requests[0]


async def test_429_is_retried_then_answered(fake: tuple[FakeOpenAI, str]) -> None:
    server, base_url = fake
    server.replies = [
        Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"}),
        Reply(503, {"error": {"message": "overloaded"}}),
        text_reply("finally"),
    ]
    registry = CollectorRegistry()
    provider = provider_for(base_url, registry, max_retries=2)
    try:
        answer = await provider.complete(ChatRequest((ChatMessage("user", "hi"),)))
    finally:
        await provider.aclose()
    assert answer.text == "finally"
    assert len(server.requests) == 3
    assert sample(registry, "pipeline_llm_requests_total", outcome="retried") == 2
    assert sample(registry, "pipeline_llm_requests_total", outcome="ok") == 1


async def test_retry_after_is_honoured_as_seconds_or_an_http_date(
    fake: tuple[FakeOpenAI, str],
) -> None:
    """The client waits what the server asks (the shared parser of pipeline.retry), not
    only its own 10-50 ms backoff; an HTTP date in the past waits nothing more."""
    server, base_url = fake
    server.replies = [
        Reply(503, {"error": "busy"}, headers={"Retry-After": "1"}),
        Reply(503, {"error": "busy"}, headers={"Retry-After": "Wed, 01 Jan 2020 00:00:00 GMT"}),
        text_reply("after the wait"),
    ]
    provider = provider_for(base_url, CollectorRegistry(), max_retries=2)
    started = time.monotonic()
    try:
        answer = await provider.complete(ChatRequest((ChatMessage("user", "hi"),)))
    finally:
        await provider.aclose()
    assert answer.text == "after the wait"
    assert len(server.requests) == 3
    assert time.monotonic() - started >= 1.0


async def test_retries_run_out(fake: tuple[FakeOpenAI, str]) -> None:
    server, base_url = fake
    server.replies = [Reply(500, {"error": "boom"}) for _ in range(3)]
    registry = CollectorRegistry()
    provider = provider_for(base_url, registry, max_retries=1)
    try:
        with pytest.raises(LLMError, match=r"after 2 attempts.*HTTP 500"):
            await provider.complete(ChatRequest((ChatMessage("user", "hi"),)))
    finally:
        await provider.aclose()
    assert len(server.requests) == 2
    assert sample(registry, "pipeline_llm_requests_total", outcome="failed") == 1


async def test_a_slow_server_times_out_and_is_retried(fake: tuple[FakeOpenAI, str]) -> None:
    server, base_url = fake
    server.replies = [Reply(body=completion({"role": "assistant", "content": "late"}), delay=2)]
    server.replies.append(text_reply("in time"))
    registry = CollectorRegistry()
    provider = provider_for(base_url, registry, timeout_seconds=0.3, max_retries=1)
    started = time.monotonic()
    try:
        answer = await provider.complete(ChatRequest((ChatMessage("user", "hi"),)))
    finally:
        await provider.aclose()
    assert answer.text == "in time"
    assert time.monotonic() - started < 2
    assert sample(registry, "pipeline_llm_requests_total", outcome="retried") == 1


async def test_a_timeout_on_every_attempt_fails(fake: tuple[FakeOpenAI, str]) -> None:
    server, base_url = fake
    server.replies = [Reply(delay=2), Reply(delay=2)]
    provider = provider_for(base_url, CollectorRegistry(), timeout_seconds=0.2, max_retries=1)
    try:
        with pytest.raises(LLMError, match="timed out"):
            await provider.complete(ChatRequest((ChatMessage("user", "hi"),)))
    finally:
        await provider.aclose()


async def test_a_client_error_is_not_retried(fake: tuple[FakeOpenAI, str]) -> None:
    server, base_url = fake
    server.replies = [Reply(400, {"error": {"message": "model not found"}})]
    provider = provider_for(base_url, CollectorRegistry(), max_retries=3)
    try:
        with pytest.raises(LLMError, match=r"HTTP 400.*model not found"):
            await provider.complete(ChatRequest((ChatMessage("user", "hi"),)))
    finally:
        await provider.aclose()
    assert len(server.requests) == 1


async def test_no_server_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = provider_for(f"http://127.0.0.1:{port}/v1", CollectorRegistry(), max_retries=1)
    try:
        with pytest.raises(LLMError, match="transport error"):
            await provider.complete(ChatRequest((ChatMessage("user", "hi"),)))
    finally:
        await provider.aclose()


def test_an_unknown_provider_is_a_config_error() -> None:
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="PIPELINE_LLM__PROVIDER"):
        create_provider(LLMSettings(provider="nope"), registry=CollectorRegistry(), service="a")


def test_the_api_key_is_not_printed() -> None:
    assert "sk-secret" not in repr(LLMSettings(api_key="sk-secret"))


class HeldCompletions:
    """A minimal chat-completions server that holds every request until ``expected`` are
    in progress at once (or ``patience`` passed), then answers them all; it counts the
    most requests it held at once."""

    def __init__(self, expected: int, patience: float = 5.0) -> None:
        self.expected, self.patience = expected, patience
        self.held = self.most_held = 0
        self.all_in: asyncio.Event = asyncio.Event()
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = json.dumps(completion({"role": "assistant", "content": "ok"})).encode()
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                self.held += 1
                self.most_held = max(self.most_held, self.held)
                if self.held >= self.expected:
                    self.all_in.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.all_in.wait(), self.patience)
                self.held -= 1
                writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.mark.parametrize(("max_connections", "expected"), [(None, 300), (40, 40)])
async def test_hundreds_of_calls_wait_on_the_model_at_once(
    max_connections: int | None, expected: int
) -> None:
    server_state = HeldCompletions(expected, patience=0.5 if max_connections else 10.0)
    server = await asyncio.start_server(server_state.serve, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    overrides = {} if max_connections is None else {"max_connections": max_connections}
    provider = provider_for(f"http://127.0.0.1:{port}/v1", CollectorRegistry(), **overrides)
    request = ChatRequest(system="", messages=(ChatMessage("user", "hi"),), tools=())
    try:
        answers = await asyncio.gather(*(provider.complete(request) for _ in range(300)))
    finally:
        await provider.aclose()
        server.close()
    assert [a.text for a in answers] == ["ok"] * 300
    # The default pool holds all 300 at once; a smaller one bounds them.
    assert server_state.most_held == expected

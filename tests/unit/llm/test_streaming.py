"""Streamed completions: the chunks folded into one completion, the OpenAI-compatible
provider reading a real event stream over HTTP (a stream cut mid-answer asked again, a
server that does not stream), and the deterministic provider writing word by word."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CollectorRegistry

from pipeline.config.sections import LLMSettings
from pipeline.dev.model_stand_in import StandInModel
from pipeline.errors import LLMError
from pipeline.llm import ChatMessage, ChatRequest, DeterministicProvider, create_provider, streams
from pipeline.llm.openai import OpenAIProvider
from pipeline.llm.openai_stream import ChunkAssembler
from pipeline.llm.streaming import CollectedText
from tests.app_server import serve_app

REQUEST = ChatRequest(messages=(ChatMessage("user", "tell me a story"),))


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    body = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}"


def provider_for(base_url: str, registry: CollectorRegistry, **overrides: Any) -> OpenAIProvider:
    settings = LLMSettings(
        provider="openai",
        base_url=base_url,
        model="test-model",
        api_key="sk-test",
        backoff_initial_seconds=0.01,
        backoff_max_seconds=0.02,
        allowed_networks=["127.0.0.0/8"],  # the local server stands in for the model
        **overrides,
    )
    provider = create_provider(settings, registry=registry, service="agent")
    assert isinstance(provider, OpenAIProvider)
    return provider


def sample(registry: CollectorRegistry, name: str) -> float:
    labels = {"service": "agent", "provider": "openai", "model": "test-model"}
    return registry.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------ the chunks


def test_text_and_tool_call_pieces_fold_into_one_completion() -> None:
    assembler = ChunkAssembler()
    lines = [
        ": keep-alive",
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let me "}),
        "",
        chunk({"content": "check."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "calculator", "arguments": '{"expr'},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ession": "12*7"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "current_time"}}]}),
        chunk({}, finish="tool_calls"),
        'data: {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 9}}',
        "data: [DONE]",
    ]
    written = [assembler.add_line(line) for line in lines]
    assert [w for w in written if w] == ["Let me ", "check."]
    assert assembler.done and assembler.finished
    completion = assembler.completion()
    assert completion.text == "Let me check."
    assert [(c.id, c.name, dict(c.arguments)) for c in completion.tool_calls] == [
        ("call_1", "calculator", {"expression": "12*7"}),
        ("call_2", "current_time", {}),
    ]
    assert completion.usage is not None and completion.usage.completion_tokens == 9


def test_a_tool_call_alone_has_no_text_and_an_error_chunk_fails() -> None:
    assembler = ChunkAssembler()
    assembler.add_line(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "t"}}]}))
    assert assembler.completion().text is None
    with pytest.raises(LLMError, match="overloaded"):
        assembler.add_line('data: {"error": {"message": "overloaded"}}')
    with pytest.raises(LLMError, match="not JSON"):
        assembler.add_line("data: {half")


# ------------------------------------------------------------------ over HTTP


async def test_the_answer_is_written_word_by_word_as_the_model_writes_it() -> None:
    registry = CollectorRegistry()
    with StandInModel(tokens=20, tokens_per_second=100) as model:
        provider = provider_for(model.base_url, registry)
        sink = CollectedText()
        arrivals: list[float] = []
        original = sink.write

        def write(text: str) -> None:
            arrivals.append(time.monotonic())
            original(text)

        sink.write = write  # type: ignore[method-assign]
        try:
            completion = await provider.stream(REQUEST, sink)
        finally:
            await provider.aclose()
    assert len(sink.parts) == 20
    assert completion.text == sink.text
    assert completion.text.startswith("tell me a story: w1 w2")
    # Written as they came, not all at the end: 20 words at 100/s take about 0.19 s.
    assert arrivals[-1] - arrivals[0] > 0.12
    assert completion.usage is not None and completion.usage.completion_tokens == 20
    assert sample(registry, "pipeline_llm_time_to_first_token_seconds_count") == 1
    assert sample(registry, "pipeline_llm_stream_duration_seconds_count") == 1
    assert sample(registry, "pipeline_llm_time_to_first_token_seconds_sum") < 0.5


def scripted(attempts: list[list[str] | dict[str, Any]]) -> tuple[FastAPI, list[dict[str, Any]]]:
    """A model whose n-th request gets the n-th script: event-stream lines (a request
    whose lines end without [DONE] is cut off there), or a whole JSON completion."""
    app = FastAPI()
    bodies: list[dict[str, Any]] = []

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Response:
        bodies.append(await request.json())
        script = attempts.pop(0)
        if isinstance(script, dict):
            return JSONResponse(script)

        async def lines() -> AsyncIterator[str]:
            for line in script:
                yield line + "\n\n"
                await asyncio.sleep(0.01)
            if script[-1] != "data: [DONE]":
                raise ConnectionResetError("the model's connection was lost")

        return StreamingResponse(lines(), media_type="text/event-stream")

    return app, bodies


async def test_a_stream_cut_mid_answer_is_asked_again_and_written_from_the_start() -> None:
    whole = [chunk({"content": "Once "}), chunk({"content": "upon"}, "stop"), "data: [DONE]"]
    app, bodies = scripted([[chunk({"content": "Once "}), chunk({"content": "up"})], whole])
    sink = CollectedText()
    with serve_app(app) as base_url:
        provider = provider_for(base_url, CollectorRegistry())
        try:
            completion = await provider.stream(REQUEST, sink)
        finally:
            await provider.aclose()
    assert sink.restarts == 1
    assert sink.text == completion.text == "Once upon"
    assert len(bodies) == 2
    assert bodies[0]["stream"] is True
    assert bodies[0]["stream_options"] == {"include_usage": True}


async def test_a_server_that_does_not_stream_is_read_whole() -> None:
    whole = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "All at once."}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3},
    }
    app, _ = scripted([whole])
    sink = CollectedText()
    with serve_app(app) as base_url:
        provider = provider_for(base_url, CollectorRegistry())
        try:
            completion = await provider.stream(REQUEST, sink)
        finally:
            await provider.aclose()
    assert completion.text == "All at once."
    assert sink.parts == ["All at once."]


async def test_an_error_reported_in_the_stream_fails_the_call() -> None:
    app, _ = scripted([[chunk({"content": "Hi"}), 'data: {"error": {"message": "boom"}}']])
    with serve_app(app) as base_url:
        provider = provider_for(base_url, CollectorRegistry())
        try:
            with pytest.raises(LLMError, match="boom"):
                await provider.stream(REQUEST, CollectedText())
        finally:
            await provider.aclose()


def test_streaming_is_a_setting() -> None:
    registry = CollectorRegistry()
    assert streams(provider_for("http://127.0.0.1:9/v1", registry))
    assert not streams(provider_for("http://127.0.0.1:9/v1", CollectorRegistry(), stream=False))


# ------------------------------------------------------------------ deterministic


async def test_the_deterministic_provider_streams_word_by_word_when_asked() -> None:
    assert not streams(DeterministicProvider())
    provider = create_provider(
        LLMSettings(deterministic_words_per_second=50), registry=CollectorRegistry(), service="a"
    )
    assert streams(provider)
    assert isinstance(provider, DeterministicProvider)
    sink = CollectedText()
    request = ChatRequest(messages=(ChatMessage("user", "one two three four"),))
    started = time.monotonic()
    completion = await provider.stream(request, sink)
    assert sink.parts == ["You ", "said: ", "one ", "two ", "three ", "four"]
    assert completion.text == sink.text == "You said: one two three four"
    assert time.monotonic() - started >= 5 / 50 * 0.9  # five pauses between six words

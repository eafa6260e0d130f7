"""The agent with the OpenAI-compatible provider, against a local chat-completions server:
the model asks for the calculator, the tool answers, the model's answer is delivered."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry

from pipeline.services import tools
from pipeline.services.agent import build
from tests.app_server import serve_app
from tests.integration.runtime_support import read_all_async, running, settings_for
from tests.integration.test_agent_pipeline import TOPICS, events_of, message, produce_in_order


def model_app(requests: list[dict[str, Any]]) -> FastAPI:
    """A model that calls the calculator for a question and answers from its result."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> dict[str, Any]:
        body = await request.json()
        requests.append(body)
        last = body["messages"][-1]
        if last["role"] == "tool":
            value = json.loads(last["content"])["value"]
            message: dict[str, Any] = {"role": "assistant", "content": f"It is {value}."}
        else:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{len(requests)}",
                        "type": "function",
                        "function": {
                            "name": "calculator",
                            "arguments": json.dumps({"expression": "12*7"}),
                        },
                    }
                ],
            }
        return {
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
        }

    return app


@contextlib.contextmanager
def serve(reply: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[str]:
    """A chat-completions stand-in whose assistant message is ``reply(request body)``."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> dict[str, Any]:
        body = await request.json()
        return {
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": reply(body), "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
        }

    with serve_app(app) as base_url:
        yield base_url


@pytest.fixture
def model() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    requests: list[dict[str, Any]] = []
    with serve_app(model_app(requests)) as base_url:
        yield base_url, requests


async def test_an_openai_compatible_model_drives_a_tool_call_turn(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    model: tuple[str, list[dict[str, Any]]],
) -> None:
    base_url, requests = model
    make_topics(*TOPICS, partitions=2)
    settings = settings_for(
        kafka_bootstrap,
        topic_prefix,
        llm={
            "provider": "openai",
            "base_url": base_url,
            "model": "local",
            "api_key": "k",
            "allowed_networks": ["127.0.0.0/8"],
        },
    )
    registry = CollectorRegistry()
    question = message("conv-openai", "what is twelve times seven?", external_id="x1")
    async with running(build(settings, registry=registry)), running(tools.build(settings)):
        produce_in_order(kafka_bootstrap, topic_prefix + "message_received", [question])
        (answer,) = events_of(
            await read_all_async(
                kafka_bootstrap, topic_prefix + "response_ready", lambda r: len(r) >= 1, 60
            )
        )
    assert answer["text"] == "It is 84."
    assert answer.metadata.correlation_id == question.id
    first, second = requests
    assert first["messages"][-1] == {"role": "user", "content": "what is twelve times seven?"}
    assert {t["function"]["name"] for t in first["tools"]} >= {"calculator"}
    # The call's id is the agent's own, derived from the handled event (the same on every
    # re-handling), not the model's "call_1"; the tool message answers that id.
    call_id = second["messages"][-2]["tool_calls"][0]["id"]
    assert call_id.startswith("call_") and call_id != "call_1"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": call_id,
        "content": '{"value": 84}',
    }
    labels = {"service": "agent", "provider": "openai", "model": "local"}
    prompt = registry.get_sample_value("pipeline_llm_tokens_total", {**labels, "kind": "prompt"})
    assert prompt == 40
    count = registry.get_sample_value("pipeline_llm_request_duration_seconds_count", labels)
    assert count == 2

"""Calling the model: a failing provider is apologised for at once, its retries are not
multiplied by handler retries, and the model is offered only the advertised tools."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.config.sections import LLMSettings
from pipeline.llm import LLMError, create_provider
from pipeline.services.agent.turns import LLM_DOWN
from pipeline.toolbox.tool_offer import StaticOffer
from tests.unit.services.agent.agent_support import ScriptedProvider
from tests.unit.services.agent.handler_support import (
    Harness,
    message,
)


async def test_a_model_failure_is_apologised_for_at_once_without_a_handler_retry() -> None:
    provider = ScriptedProvider(LLMError("down"))
    agent = await Harness(provider).start()
    (answer,) = await agent.send(message("hello"), attempt=1)
    assert answer["text"] == LLM_DOWN
    assert len(provider.requests) == 1


class DownModel(BaseHTTPRequestHandler):
    """A chat-completions server that always answers 503, and counts the requests."""

    requests = 0

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"error": {"message": "overloaded"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


async def test_llm_retries_do_not_nest_inside_handler_retries() -> None:
    """One message costs at most 1 + PIPELINE_LLM__MAX_RETRIES model calls per step of
    the tool loop (3 here), not that many per handler attempt (it was 4 x 3 = 12)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), DownModel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    llm = LLMSettings(
        provider="openai",
        base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
        allowed_networks=["127.0.0.0/8"],
        max_retries=2,
        backoff_initial_seconds=0.01,
        backoff_max_seconds=0.02,
    )
    provider = create_provider(llm, registry=CollectorRegistry(), service="agent")
    try:
        agent = await Harness(provider).start()
        (answer,) = await agent.send(message("hello"), attempt=1)
    finally:
        await provider.aclose()
        server.shutdown()
        server.server_close()
    assert answer["text"] == LLM_DOWN
    assert DownModel.requests == 3


async def test_without_a_calculator_offered_the_model_says_so() -> None:
    harness = Harness()
    harness.agent.tools = StaticOffer(())
    agent = await harness.start()
    (answer,) = await agent.send(message("what is 12*7?"))
    assert "calculator is not available" in answer["text"]

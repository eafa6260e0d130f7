"""Services and stand-ins for the Prometheus scrape test.

``build_flaky`` fails on messages whose text starts with "fail", so that handler errors
and handler-stage dead letters are exported too; run it as
``pipeline run scrape_services:build_flaky`` with this folder on PYTHONPATH.

``chat_completions`` is an OpenAI-compatible endpoint for the agent (so the LLM metrics
come from real requests): it asks for the calculator when the user asks "what is A*B",
answers with the tool's result, and reports token usage. ``callbacks`` receives what the
delivery service sends to web chat callback URLs.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service

USAGE = {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
_ARITHMETIC = re.compile(r"what is\s+([0-9][0-9*+/ ()-]*[0-9)])", re.IGNORECASE)


def build_flaky(settings: Settings | None = None) -> Service:
    service = Service("flaky", settings=settings)

    @service.handler("message_received")
    async def flaky(event: Event, ctx: Context) -> None:
        if str(event["text"]).startswith("fail"):
            raise RuntimeError("asked to fail")

    return service


def completion(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completion for a request body."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    offered = {t["function"]["name"] for t in body.get("tools") or []}
    message: dict[str, Any] = {"role": "assistant", "content": "Noted."}
    if last.get("role") == "tool":
        message["content"] = f"The answer is {last.get('content')}."
    elif (match := _ARITHMETIC.search(str(last.get("content") or ""))) and "calculator" in offered:
        arguments = json.dumps({"expression": match.group(1).strip()})
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call-{len(messages)}",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": arguments},
                }
            ],
        }
    return {
        "id": "chatcmpl-scrape",
        "object": "chat.completion",
        "model": body.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": USAGE,
    }


@contextlib.contextmanager
def _serve(answer: Callable[[str, dict[str, Any]], dict[str, Any]]) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            data = json.dumps(answer(self.path, body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chat_completions() -> Iterator[int]:
    """An OpenAI-compatible server on a free port (base URL http://127.0.0.1:PORT/v1)."""
    with _serve(lambda path, body: completion(body)) as port:
        yield port


@contextlib.contextmanager
def callbacks(received: list[dict[str, Any]]) -> Iterator[int]:
    """A web chat callback receiver on a free port; bodies land in ``received``."""

    def answer(path: str, body: dict[str, Any]) -> dict[str, Any]:
        received.append(body)
        return {"id": f"web-{len(received)}"}

    with _serve(answer) as port:
        yield port

"""A stand-in OpenAI-compatible model for the actions chaos runs, on 127.0.0.1.

``POST /v1/chat/completions`` answers as a tool-using model does (the request and response
shapes of :mod:`pipeline.llm.openai`), after ``latency`` seconds:

- to a conversation whose user message asks for a refund (:func:`refund_request`), with a
  call of the tool it names, under a fresh random tool-call id each time, as real models
  give;
- once the request carries that tool's result, with a final text naming the conversation
  (:func:`final_text`).

Every request is one line of a JSON-lines log, read back with :func:`read_model_log`: the
logical step's fingerprint (a hash of the user text and the step, ``tool`` or ``final``),
the conversation, when the request came in and when its answer went out (wall clock), the
tool-call id it gave (tool step) or answered (final step), and whether the agent offered
the tool. :class:`ModelStandIn` serves in a thread of the process that enters it and stops
when it is left.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

TOOL_STEP, FINAL_STEP, OTHER_STEP = "tool", "final", "other"
_REQUEST = re.compile(r"refund order (?P<order>\S+) for (?P<conversation>\S+) using (?P<tool>\w+)")


def refund_request(conversation: str, order_id: str, tool: str) -> str:
    """The user's message that makes the model call ``tool`` for ``order_id``."""
    return f"Please refund order {order_id} for {conversation} using {tool}."


def final_text(conversation: str, order_id: str, outcome: str) -> str:
    """The model's last answer in ``conversation``; it names the conversation."""
    return f"Refund of {order_id} for {conversation}: {outcome}."


def fingerprint(user_text: str, step: str) -> str:
    """The identity of one logical step: the conversation's request and which step."""
    return hashlib.sha256(f"{user_text}\0{step}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One chat-completion request the stand-in answered."""

    fingerprint: str
    conversation: str
    step: str
    start: float  # wall-clock seconds
    end: float
    call_id: str | None  # the tool-call id given (tool step) or answered (final step)
    tool: str | None
    offered: bool  # the requested tool was among the tools offered


class ModelStandIn:
    """The stand-in model, served while entered; ``base_url`` is its chat-completions URL."""

    def __init__(self, log: Path, latency: float = 0.2) -> None:
        self.log_path = log
        self.latency = latency
        self.base_url = ""
        self.latest_request = 0.0  # when the latest request came in (wall clock)
        self._log: TextIO | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Response:
            start = self.latest_request = time.time()
            try:
                body = await request.json()
            except ClientDisconnect:  # the agent closed its client mid-request: no call
                return Response(status_code=499)
            message, logged = self.answer(body)
            await asyncio.sleep(self.latency)
            self._write({**logged, "start": start, "end": time.time()})
            return JSONResponse(
                {
                    "id": f"chatcmpl-{secrets.token_hex(8)}",
                    "object": "chat.completion",
                    "model": body.get("model", "stand-in"),
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
                }
            )

        return app

    def answer(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the assistant message, the log line's fields) for one request body."""
        messages = body.get("messages") or []
        user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        text = str(user.get("content") or "")
        asked = _REQUEST.search(text)
        result = next((m for m in reversed(messages) if m.get("role") == "tool"), None)
        if asked is None:
            step = OTHER_STEP
            conversation, tool = "", None
            message: dict[str, Any] = {"role": "assistant", "content": "I only do refunds."}
            call_id = None
        elif result is None:
            step = TOOL_STEP
            conversation, tool = asked["conversation"], asked["tool"]
            call_id = f"call_{secrets.token_hex(12)}"
            arguments = {"order_id": asked["order"], "conversation": conversation}
            arguments["amount_cents"] = 1000 + sum(map(ord, asked["order"])) % 9000
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": tool, "arguments": json.dumps(arguments)},
                    }
                ],
            }
        else:
            step = FINAL_STEP
            conversation, tool = asked["conversation"], asked["tool"]
            call_id = str(result.get("tool_call_id") or "")
            outcome = _outcome(str(result.get("content") or ""))
            message = {
                "role": "assistant",
                "content": final_text(conversation, asked["order"], outcome),
            }
        offered = {str((t.get("function") or {}).get("name")) for t in body.get("tools") or ()}
        logged = {
            "fingerprint": fingerprint(text, step),
            "conversation": conversation,
            "step": step,
            "call_id": call_id,
            "tool": tool,
            "offered": tool in offered,
        }
        return message, logged

    def _write(self, line: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.write(json.dumps(line) + "\n")
            self._log.flush()

    def __enter__(self) -> ModelStandIn:
        self._log = self.log_path.open("a", encoding="utf-8")
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(), log_level="warning", lifespan="off", ws="none", access_log=False
        )
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="model-stand-in", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.__exit__(None, None, None)
                raise RuntimeError("the stand-in model did not start within 15s")
            time.sleep(0.01)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
        if self._log is not None:
            self._log.close()
            self._log = None


def read_model_log(log: Path) -> list[ModelRequest]:
    """Every request the stand-in logged, in the order answered."""
    if not log.exists():
        return []
    requests = []
    for line in log.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        requests.append(
            ModelRequest(
                raw["fingerprint"],
                raw["conversation"],
                raw["step"],
                float(raw["start"]),
                float(raw["end"]),
                raw["call_id"],
                raw["tool"],
                bool(raw["offered"]),
            )
        )
    return requests


def _outcome(content: str) -> str:
    """What the final text says of the tool's answer (its result, or its failure)."""
    try:
        result = json.loads(content)
    except ValueError:
        return "done"
    if isinstance(result, dict) and result.get("status") in {"error", "timeout", "unknown"}:
        return f"not confirmed ({result['status']}: {result.get('error', '')})"
    return "done"

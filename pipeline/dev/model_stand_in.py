"""A stand-in for a model that writes: an OpenAI-compatible chat-completions server on
127.0.0.1 that answers every request with ``tokens`` words at ``tokens_per_second``.

Asked with ``"stream": true`` it sends each word as a chunk as it is "written"; asked
without, it answers with the whole completion once the last word is written, as a model
that does not stream would. Each answer starts with the last user message's text (so a
test or a benchmark can tell turns apart), then counts words. When each answer's first
and last word were written (wall-clock seconds) is kept by that text
(:attr:`StandInModel.written`), so what a reader saw can be timed against the model.

    with StandInModel(tokens=200, tokens_per_second=50) as model:
        llm = {"provider": "openai", "base_url": model.base_url, "allowed_networks":
               ["127.0.0.0/8"], ...}  # the egress policy refuses loopback otherwise
        settings = Settings(llm=llm)

For development and tests only: ``benchmarks/stream_latency.py``, the integration and
browser tests of streamed answers.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from pipeline.dev.kafka import free_port


@dataclass(slots=True)
class Written:
    """When one answer's words were written (time.time())."""

    first: float
    last: float | None = None
    streamed: bool = True


class StandInModel:
    """The server, in a thread of its own, from :meth:`start` to :meth:`stop`."""

    def __init__(
        self, tokens: int = 200, tokens_per_second: float = 50.0, port: int | None = None
    ) -> None:
        self.tokens = tokens
        self.tokens_per_second = tokens_per_second
        self.port = port or free_port()
        self.written: dict[str, Written] = {}
        self.requests = 0
        self._lock = threading.Lock()
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()), name="model-stand-in", daemon=True
        )

    @property
    def base_url(self) -> str:
        """The chat-completions base URL (``PIPELINE_LLM__BASE_URL``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def words(self, prompt: str) -> list[str]:
        """The answer to ``prompt``: the prompt, then numbered words, ``tokens`` in all."""
        return [f"{prompt}:", *(f"w{i}" for i in range(1, self.tokens))]

    def app(self) -> FastAPI:
        app = FastAPI(openapi_url=None)

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Response:
            body = await request.json()
            with self._lock:
                self.requests += 1
            prompt = _last_user_text(body)
            words = self.words(prompt)
            if body.get("stream"):
                return StreamingResponse(
                    self._chunks(prompt, words, body), media_type="text/event-stream"
                )
            started = time.time()
            await asyncio.sleep(len(words) / self.tokens_per_second)
            self.written[prompt] = Written(started, time.time(), streamed=False)
            return JSONResponse(_completion(body, " ".join(words)))

        return app

    async def _chunks(
        self, prompt: str, words: list[str], body: dict[str, Any]
    ) -> AsyncIterator[str]:
        pause = 1.0 / self.tokens_per_second
        started = time.monotonic()
        for index, word in enumerate(words):
            # Paced from the start, so the rate holds however long each send took.
            delay = started + index * pause - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if index == 0:
                self.written[prompt] = Written(time.time())
            text = word if index == 0 else f" {word}"
            yield _sse({"choices": [{"index": 0, "delta": {"content": text}}]}, body)
        self.written[prompt].last = time.time()
        yield _sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, body)
        usage = {"prompt_tokens": 10, "completion_tokens": len(words)}
        yield _sse({"choices": [], "usage": {**usage, "total_tokens": 10 + len(words)}}, body)
        yield "data: [DONE]\n\n"

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the stand-in model did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or ()):
        if message.get("role") == "user":
            return " ".join(str(message.get("content") or "").split())
    return ""


def _sse(chunk: dict[str, Any], body: dict[str, Any]) -> str:
    full = {
        "id": "chatcmpl-stand-in",
        "object": "chat.completion.chunk",
        "model": body.get("model"),
        **chunk,
    }
    return f"data: {json.dumps(full)}\n\n"


def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stand-in",
        "object": "chat.completion",
        "model": body.get("model"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split())},
    }

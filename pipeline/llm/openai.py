"""An OpenAI-compatible chat-completions provider over httpx.

Works with any server speaking ``POST {base_url}/chat/completions`` (OpenAI, Azure
OpenAI's compatible endpoint, vLLM, Ollama, LiteLLM...). Tools are offered as
``tools=[{"type": "function", ...}]``; the model's ``tool_calls`` come back as
:class:`ToolCall`. 429, 5xx, timeouts and transport errors are retried with exponential
backoff and jitter (honouring ``Retry-After``); other 4xx fail at once. Requests go
through the egress policy (:mod:`pipeline.egress`): only the base URL's origin, at a
public address or in ``allowed_networks``, no redirect followed, no proxy from the
environment; a refused base URL fails the request as an LLMError, at once.

:meth:`OpenAIProvider.stream` asks with ``"stream": true`` and reads the server-sent
chunks as they come (:mod:`pipeline.llm.openai_stream`), writing the text to a sink; a
server that answers with a whole completion instead is read as one. A stream cut in the
middle is retried like a failed request, the sink told to start again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx
from prometheus_client import CollectorRegistry

from pipeline.config.sections import LLMSettings
from pipeline.egress import EgressPolicy, GuardedTransport
from pipeline.errors import EgressRefused, LLMError
from pipeline.llm.base import ChatMessage, ChatRequest, Completion, ToolCall, Usage
from pipeline.llm.metrics import LLMMetrics
from pipeline.llm.openai_stream import ChunkAssembler, tool_arguments
from pipeline.llm.streaming import TextSink
from pipeline.retry import RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 30.0


class OpenAIProvider:
    """Chat completions against ``settings.base_url`` with ``settings.model``."""

    name = "openai"

    def __init__(
        self,
        settings: LLMSettings,
        *,
        registry: CollectorRegistry,
        service: str,
        metrics: LLMMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.model = settings.model
        self.service = service
        self.can_stream = settings.stream
        headers = {"Content-Type": "application/json"}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        if transport is None:
            # The base URL is the operator's: its origin only, at a public address or in
            # allowed_networks, connected to as checked (pipeline.egress).
            policy = EgressPolicy.for_destinations([settings.base_url], settings.allowed_networks)
            # Hundreds of calls wait on a model at once: each keeps its connection.
            connections = settings.max_connections
            limits = httpx.Limits(
                max_connections=connections, max_keepalive_connections=connections
            )
            transport = GuardedTransport(policy, limits=limits)
        self._url = httpx.URL(settings.base_url.rstrip("/") + "/chat/completions")
        self._client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(
                settings.timeout_seconds, connect=settings.connect_timeout_seconds
            ),
            transport=transport,
            trust_env=False,
        )
        metrics = metrics or LLMMetrics(registry)
        labels = (service, self.name, self.model)
        self._duration = metrics.duration.labels(*labels)
        self._prompt_tokens = metrics.tokens.labels(*labels, "prompt")
        self._completion_tokens = metrics.tokens.labels(*labels, "completion")
        self._first_token = metrics.first_token.labels(*labels)
        self._stream_duration = metrics.stream_duration.labels(*labels)
        self._policy = RetryPolicy(
            max_attempts=settings.max_retries + 1,
            initial_seconds=settings.backoff_initial_seconds,
            max_seconds=settings.backoff_max_seconds,
            retry_after_max_seconds=MAX_RETRY_AFTER_SECONDS,
        )
        self._outcomes = {
            o: metrics.requests.labels(*labels, o) for o in ("ok", "retried", "failed")
        }

    async def complete(self, request: ChatRequest) -> Completion:
        # Encoded once for every attempt; the URL is absolute, so httpx joins nothing.
        content = json.dumps(self.payload(request), ensure_ascii=False).encode()
        attempt = 0
        while True:
            attempt += 1
            retry_in = await self._attempt(content, attempt)
            if isinstance(retry_in, Completion):
                return retry_in
            await asyncio.sleep(retry_in)

    async def stream(self, request: ChatRequest, sink: TextSink) -> Completion:
        """The completion of ``request``, asked with ``"stream": true``, its text written
        to ``sink`` as the chunks come."""
        body = {
            **self.payload(request),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        content = json.dumps(body, ensure_ascii=False).encode()  # once for every attempt
        attempt = 0
        while True:
            attempt += 1
            retry_in = await self._streamed_attempt(content, attempt, sink)
            if isinstance(retry_in, Completion):
                return retry_in
            await asyncio.sleep(retry_in)

    async def _attempt(self, content: bytes, attempt: int) -> Completion | float:
        """One HTTP request: the completion, or how long to wait before the next attempt."""
        last = self._policy.exhausted(attempt)
        started = time.perf_counter()
        try:
            response = await self._client.post(self._url, content=content)
        except EgressRefused as exc:
            self._outcomes["failed"].inc()
            raise LLMError(f"chat completion at {self.settings.base_url} refused: {exc}") from None
        except httpx.TimeoutException as exc:
            self._duration.observe(time.perf_counter() - started)
            if isinstance(exc.__cause__, aiohttp.ClientConnectorError):
                # aiohttp's transport reports a refused connection as a ConnectTimeout.
                return self._retry_or_fail(last, attempt, f"transport error {exc!r}", None)
            return self._retry_or_fail(last, attempt, f"timed out after {exc!r}", None)
        except httpx.TransportError as exc:
            self._duration.observe(time.perf_counter() - started)
            return self._retry_or_fail(last, attempt, f"transport error {exc!r}", None)
        self._duration.observe(time.perf_counter() - started)
        if response.status_code >= 400:
            return self._refused(response, last, attempt)
        return self._read(response)

    async def _streamed_attempt(
        self, content: bytes, attempt: int, sink: TextSink
    ) -> Completion | float:
        """One streamed HTTP request: the completion, or how long to wait before the next
        attempt (the sink told to start again when it had been written to)."""
        last = self._policy.exhausted(attempt)
        started = time.perf_counter()
        assembler = ChunkAssembler()
        try:
            async with self._client.stream("POST", self._url, content=content) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._duration.observe(time.perf_counter() - started)
                    return self._refused(response, last, attempt)
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    # A server that does not stream answers with the whole completion.
                    await response.aread()
                    self._duration.observe(time.perf_counter() - started)
                    completion = self._read(response)
                    self._first_token.observe(time.perf_counter() - started)
                    if completion.text:
                        sink.write(completion.text)
                    return completion
                try:
                    await self._read_chunks(response, assembler, sink, started)
                except LLMError as exc:  # the stream itself said so, or was unreadable
                    self._duration.observe(time.perf_counter() - started)
                    self._outcomes["failed"].inc()
                    raise LLMError(
                        f"unreadable chat completion from {self.settings.base_url}: {exc}"
                    ) from exc
        except EgressRefused as exc:
            self._outcomes["failed"].inc()
            raise LLMError(f"chat completion at {self.settings.base_url} refused: {exc}") from None
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            self._duration.observe(time.perf_counter() - started)
            if assembler.started:
                sink.restart()
            # aiohttp's transport reports a refused connection as a ConnectTimeout.
            timed_out = isinstance(exc, httpx.TimeoutException) and not isinstance(
                exc.__cause__, aiohttp.ClientConnectorError
            )
            kind = "timed out" if timed_out else "transport error"
            return self._retry_or_fail(last, attempt, f"stream {kind}: {exc!r}", None)
        elapsed = time.perf_counter() - started
        self._duration.observe(elapsed)
        if not (assembler.done or assembler.finished):
            if assembler.started:
                sink.restart()
            return self._retry_or_fail(last, attempt, "the stream ended mid-answer", None)
        self._stream_duration.observe(elapsed)
        completion = assembler.completion()
        self._outcomes["ok"].inc()
        self._count_usage(completion)
        return completion

    async def _read_chunks(
        self,
        response: httpx.Response,
        assembler: ChunkAssembler,
        sink: TextSink,
        started: float,
    ) -> None:
        """The streamed chunks into ``assembler``, their text written to ``sink``."""
        waiting_for_first = True
        async for line in response.aiter_lines():
            text = assembler.add_line(line)
            if waiting_for_first and assembler.started:
                waiting_for_first = False
                self._first_token.observe(time.perf_counter() - started)
            if text:
                sink.write(text)
            if assembler.done:
                return

    def _refused(self, response: httpx.Response, last: bool, attempt: int) -> float:
        """For an error status: how long to wait before the next attempt, or LLMError when
        it is not worth one."""
        if response.status_code in RETRY_STATUSES:
            reason = f"HTTP {response.status_code}: {_excerpt(response)}"
            return self._retry_or_fail(last, attempt, reason, response.headers.get("retry-after"))
        self._outcomes["failed"].inc()
        raise LLMError(
            f"{self.settings.base_url} refused the chat completion with HTTP "
            f"{response.status_code}: {_excerpt(response)}; check the model name and key"
        )

    def _read(self, response: httpx.Response) -> Completion:
        """A whole (not streamed) completion."""
        try:
            completion = parse_completion(response.json())
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            self._outcomes["failed"].inc()
            raise LLMError(
                f"unreadable chat completion from {self.settings.base_url}: {exc}"
            ) from exc
        self._outcomes["ok"].inc()
        self._count_usage(completion)
        return completion

    def _count_usage(self, completion: Completion) -> None:
        if completion.usage is not None:
            self._prompt_tokens.inc(completion.usage.prompt_tokens)
            self._completion_tokens.inc(completion.usage.completion_tokens)

    def _retry_or_fail(
        self, last: bool, attempt: int, reason: str, retry_after: str | None
    ) -> float:
        if last:
            self._outcomes["failed"].inc()
            raise LLMError(
                f"chat completion at {self.settings.base_url} failed after {attempt} attempts: "
                f"{reason}"
            )
        self._outcomes["retried"].inc()
        delay = self._policy.delay(attempt, parse_retry_after(retry_after))
        log.info("chat completion attempt %d failed (%s); retry in %.2fs", attempt, reason, delay)
        return delay

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        """The chat-completions request body for ``request``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": render_messages(request),
            "temperature": self.settings.temperature,
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters),
                    },
                }
                for t in request.tools
            ]
            body["tool_choice"] = "auto"
        return body

    async def aclose(self) -> None:
        await self._client.aclose()


def render_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """System prompt (with the context facts), then the conversation, in protocol form."""
    system = request.system
    if request.facts:
        facts = "\n".join(f"- {k}: {v}" for k, v in sorted(request.facts.items()))
        system = f"{system}\n\nKnown facts about this conversation:\n{facts}".strip()
    rendered: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    rendered.extend(_render(m) for m in request.messages)
    return rendered


def _render(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": message.content or "",
        }
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(dict(c.arguments))},
            }
            for c in message.tool_calls
        ]
    return out


def parse_completion(body: Mapping[str, Any]) -> Completion:
    """A chat-completions response body -> Completion (first choice)."""
    message = body["choices"][0]["message"]
    calls = tuple(
        ToolCall(
            call["id"],
            call["function"]["name"],
            tool_arguments(call["function"]["name"], call["function"].get("arguments")),
        )
        for call in message.get("tool_calls") or ()
        if call.get("type", "function") == "function"
    )
    usage = body.get("usage")
    return Completion(
        text=message.get("content"),
        tool_calls=calls,
        usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        if isinstance(usage, Mapping)
        else None,
    )


def _excerpt(response: httpx.Response) -> str:
    return response.text[:300].replace("\n", " ")

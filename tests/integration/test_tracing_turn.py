"""One web turn on a real broker is one trace: gateway, agent, tools, agent again and
delivery run in this process with one tracer provider (an in-memory exporter), and each
service's span is the child of the span named by the consumed record's traceparent."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from pipeline.services import tools
from pipeline.services.agent import build as build_agent
from pipeline.services.delivery import build as build_delivery
from tests.integration.gateway_support import serving
from tests.integration.runtime_support import read_all_async, running, settings_for
from tests.otel_support import ids, installed_exporter, parent_ids, traceparent

TOPICS = (
    "message_received",
    "webhook_received",
    "tool_called",
    "tool_result",
    "response_ready",
    "delivery_status",
    "delivery_sent",
    "timer_requested",
    "timer_fired",
    "context_updated",
    "agent_state_changelog",
    "response_delta",
    "history_summarized",
    "dead_letters",
    "tool_catalog",
    "tools_journal",
)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    yield from installed_exporter()


@pytest.fixture
def callbacks() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local web-chat client: the callback URL, and the bodies POSTed to it."""
    bodies: list[dict[str, Any]] = []

    class Handle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            bodies.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cb", bodies
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


async def finished(
    exporter: InMemorySpanExporter, done: Callable[[tuple[ReadableSpan, ...]], bool]
) -> tuple[ReadableSpan, ...]:
    deadline = asyncio.get_running_loop().time() + 60
    while not done(spans := exporter.get_finished_spans()):
        assert asyncio.get_running_loop().time() < deadline, [s.name for s in spans]
        await asyncio.sleep(0.05)
    return spans


async def test_a_web_turn_is_one_trace_from_the_gateway_to_delivery(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    spans: InMemorySpanExporter,
    callbacks: tuple[str, list[dict[str, Any]]],
) -> None:
    make_topics(*TOPICS, partitions=2)
    callback_url, bodies = callbacks
    settings = settings_for(
        kafka_bootstrap,
        topic_prefix,
        gateway={"web_tokens": {"acme": "tok-acme"}},
        delivery={
            "callback_allow_http": True,
            "callback_allowed_networks": ["127.0.0.0/8"],
            "callback_signing_secrets": {"*": "tracing-test-secret"},
        },
    )
    p = topic_prefix
    async with (
        running(tools.build(settings)),
        running(build_agent(settings)),
        running(build_delivery(settings)),
        serving(settings) as http,
    ):
        answer = await http.post(
            "/v1/web/messages",
            json={"user_id": "u1", "text": "what is 12*7?", "callback_url": callback_url},
            headers={"Authorization": "Bearer tok-acme"},
        )
        assert answer.status_code == 202, answer.text
        # Send spans end when the broker acknowledged their record: wait for the last.
        every = await finished(
            spans,
            lambda got: (
                {f"process {p}response_ready", f"send {p}delivery_status"} <= {s.name for s in got}
            ),
        )
        [tool_called] = await read_all_async(
            kafka_bootstrap, p + "tool_called", lambda r: len(r) >= 1, 30
        )
    assert [b["text"] for b in bodies] == ["12*7 = 84"]

    conversation = "web:acme:u1"
    # One trace: every span of the turn, the gateway's request included, shares its id.
    (server,) = [s for s in every if s.kind == SpanKind.SERVER]
    assert server.name == "POST /v1/web/messages" and server.parent is None
    trace_id = ids(server)[0]
    of_conversation = [
        s for s in every if (s.attributes or {}).get("pipeline.conversation_id") == conversation
    ]
    assert len(of_conversation) == 9  # 4 attempts, 5 sends
    assert {ids(s)[0] for s in every} == {trace_id}

    def child(parent: ReadableSpan, name: str, kind: SpanKind) -> ReadableSpan:
        found = [s for s in every if s.name == name and s.parent and parent_ids(s) == ids(parent)]
        assert len(found) == 1, f"{len(found)} spans {name!r} under {parent.name!r}"
        assert found[0].kind == kind
        return found[0]

    def hop(send: ReadableSpan, topic: str, service: str) -> ReadableSpan:
        """The consumer span of the record ``send`` produced, parented through its header."""
        process = child(send, f"process {p}{topic}", SpanKind.CONSUMER)
        assert process.parent is not None and process.parent.is_remote
        assert process.attributes is not None
        assert process.attributes["pipeline.service"] == service
        assert process.attributes["messaging.destination.name"] == p + topic
        return process

    sent = child(server, f"send {p}message_received", SpanKind.PRODUCER)
    agent = hop(sent, "message_received", "agent")
    child(agent, "chat rules-v1", SpanKind.CLIENT)
    sent = child(agent, f"send {p}tool_called", SpanKind.PRODUCER)
    # The record on the broker names the send span as its parent.
    assert dict(tool_called.headers)["traceparent"] == traceparent(sent).encode()
    runner = hop(sent, "tool_called", "tools")
    tool = child(runner, "execute_tool calculator", SpanKind.INTERNAL)
    assert tool.attributes is not None and tool.attributes["gen_ai.tool.name"] == "calculator"
    sent = child(runner, f"send {p}tool_result", SpanKind.PRODUCER)
    agent = hop(sent, "tool_result", "agent")
    child(agent, "chat rules-v1", SpanKind.CLIENT)
    sent = child(agent, f"send {p}response_ready", SpanKind.PRODUCER)
    delivery = hop(sent, "response_ready", "delivery")
    send_to_channel = child(delivery, "deliver web", SpanKind.CLIENT)
    assert send_to_channel.attributes is not None
    assert send_to_channel.attributes["http.response.status_code"] == 200
    status = child(delivery, f"send {p}delivery_status", SpanKind.PRODUCER)
    # Each send names the partition its record landed on (the conversation's).
    assert status.attributes is not None
    assert status.attributes["messaging.kafka.destination.partition"] in (0, 1)
    assert (
        dict(sent.attributes or {})["messaging.kafka.destination.partition"]
        == (status.attributes["messaging.kafka.destination.partition"])
    )

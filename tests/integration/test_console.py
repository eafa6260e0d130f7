"""The operator console over real HTTP on a real broker: no route or stream without a
session, no cross-site or token-less form post, the view follows the topics, and every
operator action is an event carrying the operator's id."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.events.catalog import DEAD_LETTER
from pipeline.events.model import Event, Metadata, utc_now
from pipeline.services.console import create_app
from pipeline.services.console.access import unscoped_routes
from pipeline.services.console.guard import PUBLIC
from pipeline.services.console.view import TOPICS
from pipeline.toolbox.catalog import CatalogCodec
from tests.integration.console_support import (
    CALCULATOR,
    CONSOLE_TOPICS,
    PASSWORD,
    TOKEN,
    console_settings,
    page_until,
    signed_in,
)
from tests.integration.gateway_support import serving_app
from tests.integration.runtime_support import (
    SERDE,
    Record,
    message,
    produce,
    produce_events,
    read_all_async,
)


@pytest.fixture
def topics(make_topics: Callable[..., list[str]]) -> None:
    make_topics(*TOPICS, *CONSOLE_TOPICS, partitions=2)


@pytest.fixture
async def console(
    kafka_bootstrap: str, topic_prefix: str, topics: None
) -> AsyncIterator[tuple[httpx.AsyncClient, CollectorRegistry, Settings]]:
    settings = console_settings(kafka_bootstrap, topic_prefix)
    registry = CollectorRegistry()
    async with serving_app(create_app(settings, registry=registry)) as http:
        yield http, registry, settings


def event(event_type: str, conversation: str, **data: Any) -> Event:
    return Event(Metadata.new(event_type, conversation, tenant_id="t1", producer="agent"), data)


def events(records: list[Record]) -> list[Event]:
    return [r.event() for r in records]


async def test_no_route_or_stream_without_a_session(
    console: tuple[httpx.AsyncClient, CollectorRegistry, Settings],
) -> None:
    http, registry, settings = console
    app = create_app(settings)
    routes = [r for r in app.routes if isinstance(r, APIRoute) and r.path not in PUBLIC]
    # Every route takes the operator's scope (tenants and role); create_app refuses one
    # that does not, and test_console_tenants walks them all as other tenants' operators.
    assert unscoped_routes(app.routes, PUBLIC) == []
    assert {"/", "/stream", "/inbox", "/approvals", "/uncertain"} <= {r.path for r in routes}
    assert "/uncertain/{call_id}/decide" in {r.path for r in routes}
    for route in routes:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in route.methods:
            answer = await http.request(method, path, headers={"Accept": "application/json"})
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"]
            if method == "GET":
                page = await http.get(path, headers={"Accept": "text/html"})
                if path == "/stream":
                    assert page.status_code == 401
                else:
                    assert page.status_code == 303, (path, page.status_code)
                    assert page.headers["location"].startswith("/signin?next=")
    forged = {"Cookie": "pipeline_console=eyJvcCI6ImFkYSJ9.forged.signature"}
    assert (await http.get("/stream", headers=forged)).status_code == 401
    assert (await http.get("/", headers={"Authorization": "Bearer nope"})).status_code == 401
    refused = registry.get_sample_value(
        "pipeline_console_refused_requests_total", {"reason": "unauthenticated"}
    )
    assert refused is not None and refused >= len(routes) + 2


async def test_sign_in_refuses_a_wrong_password_and_counts_it(
    console: tuple[httpx.AsyncClient, CollectorRegistry, Settings],
) -> None:
    http, registry, _ = console
    for operator in ("ada", "nobody"):
        answer = await http.post("/signin", data={"operator": operator, "password": "guess"})
        assert answer.status_code == 401
        assert "set-cookie" not in answer.headers
    assert registry.get_sample_value("pipeline_console_signins_total", {"result": "failure"}) == 2
    await signed_in(http)
    assert registry.get_sample_value("pipeline_console_signins_total", {"result": "success"}) == 1
    assert (await http.get("/")).status_code == 200


async def test_a_cross_site_or_token_less_post_is_refused(
    kafka_bootstrap: str,
    topic_prefix: str,
    console: tuple[httpx.AsyncClient, CollectorRegistry, Settings],
) -> None:
    http, registry, _ = console
    produce_events(kafka_bootstrap, topic_prefix + "message_received", [message("conv-c", "hi")])
    token = await signed_in(http)
    await page_until(http, "/", lambda text: "conv-c" in text)
    reply = "/conversations/conv-c/reply"
    cross = [
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ]
    for headers in cross:
        answer = await http.post(reply, data={"text": "x", "csrf_token": token}, headers=headers)
        assert answer.status_code == 403, headers
        assert "cross-site" in answer.json()["error"]
    for data in ({"text": "x"}, {"text": "x", "csrf_token": token + "0"}):
        answer = await http.post(reply, data=data)
        assert answer.status_code == 403 and "CSRF" in answer.json()["error"]
    # A cross-site sign-in form (login CSRF) is refused as well.
    signin = await http.post(
        "/signin",
        data={"operator": "ada", "password": PASSWORD},
        headers={"Origin": "http://evil.example"},
    )
    assert signin.status_code == 403
    assert (
        registry.get_sample_value(
            "pipeline_console_refused_requests_total", {"reason": "cross_site"}
        )
        == len(cross) + 1
    )
    stored = await read_all_async(
        kafka_bootstrap, topic_prefix + "operator_message", lambda _: False, 2
    )
    assert stored == [], "nothing refused was produced"
    own = await http.post(
        reply,
        data={"text": "From the console", "csrf_token": token},
        headers={"Origin": str(http.base_url).rstrip("/"), "Sec-Fetch-Site": "same-origin"},
    )
    assert own.status_code == 303, own.text


async def test_handoff_inbox_take_reply_release_are_events_with_the_operator_id(
    kafka_bootstrap: str,
    topic_prefix: str,
    console: tuple[httpx.AsyncClient, CollectorRegistry, Settings],
) -> None:
    http, registry, _ = console
    topic = topic_prefix.__add__
    asking = message("conv-h", "I want a person <script>alert(1)</script>")
    produce_events(kafka_bootstrap, topic("message_received"), [asking])
    requested = Event(
        asking.metadata.caused("handoff_requested", producer="agent"),
        {
            "requested_by": "user",
            "reason": "asked",
            "operator_id": None,
            "user_text": asking["text"],
        },
    )
    produce_events(kafka_bootstrap, topic("handoff_requested"), [requested])
    token = await signed_in(http)
    inbox = await page_until(http, "/inbox", lambda text: "conv-h" in text)
    assert "waiting for a person" in inbox
    page = await http.get("/conversations/conv-h")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text

    base = "/conversations/conv-h"
    for path, data in (
        (f"{base}/take", {}),
        (f"{base}/reply", {"text": "Hello, Ada here."}),
        (f"{base}/release", {"note": "sorted out"}),
    ):
        answer = await http.post(path, data={**data, "csrf_token": token})
        assert answer.status_code == 303, (path, answer.text)

    async def produced(name: str, count: int) -> list[Event]:
        found = await read_all_async(kafka_bootstrap, topic(name), lambda r: len(r) >= count, 30)
        return events(found)

    took = await produced("handoff_requested", 2)
    wrote = await produced("operator_message", 1)
    released = await produced("handoff_released", 1)
    assert (took[-1]["requested_by"], took[-1]["operator_id"]) == ("operator", "ada")
    assert (wrote[0]["operator_id"], wrote[0]["text"]) == ("ada", "Hello, Ada here.")
    assert (released[0]["operator_id"], released[0]["note"]) == ("ada", "sorted out")
    assert {e.conversation_id for e in [*took, *wrote, *released]} == {"conv-h"}
    assert {e.metadata.tenant_id for e in [*wrote, *released]} == {"t1"}
    # The agent takes the reply and the release (no agent runs here: its outcomes are
    # produced as it would); only then does the console show them.
    outcomes = [
        Event(
            request.metadata.caused_derived("operator_action_handled", "agent/9", producer="agent"),
            {
                "action": request.type,
                "operator_id": "ada",
                "outcome": "accepted",
                "reason": None,
                "agent_version": "test",
            },
        )
        for request in (wrote[0], released[0])
    ]
    produce_events(kafka_bootstrap, topic("operator_action_handled"), outcomes)
    await page_until(http, "/inbox", lambda text: "conv-h" not in text)
    timeline = (await http.get("/conversations/conv-h/timeline")).text
    # Every event of the conversation, the handoff linked to the message that caused it
    # (five, and the agent's two outcomes).
    assert timeline.count('<tr id="event-') == 5 + len(outcomes)
    assert f'class="cause" href="#event-{asking.id}"' in timeline
    assert "&lt;script&gt;" in timeline and "<script>alert" not in timeline
    listed = await page_until(http, "/", lambda text: "with the agent" in text)
    assert "conv-h" in listed
    actions = {
        a: registry.get_sample_value("pipeline_console_operator_actions_total", {"action": a})
        for a in ("take", "reply", "release")
    }
    assert actions == {"take": 1, "reply": 1, "release": 1}


async def test_approvals_are_decided_and_edits_checked_against_the_tool_schema(
    kafka_bootstrap: str,
    topic_prefix: str,
    console: tuple[httpx.AsyncClient, CollectorRegistry, Settings],
) -> None:
    http, _, settings = console
    topic = topic_prefix.__add__
    codec = CatalogCodec(settings.resource_dir("schemas"))
    produce(kafka_bootstrap, topic("tool_catalog"), [("calculator", codec.encode(CALCULATOR))])
    asked = [
        event(
            "approval_requested",
            conversation,
            approval_id=f"approval_{conversation}",
            call_id="c1",
            tool="calculator",
            arguments_json=json.dumps({"expression": "12*7"}),
            reason="the user asked",
            expires_at=utc_now() + timedelta(minutes=10),
        )
        for conversation in ("conv-a", "conv-b")
    ]
    produce_events(kafka_bootstrap, topic("approval_requested"), asked)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    http.headers.update(bearer)  # an API client: no session, so no CSRF token either
    await page_until(
        http, "/approvals", lambda t: "approval_conv-a" in t and "approval_conv-b" in t
    )
    decide = "/approvals/approval_conv-a/decide"
    bad = await http.post(
        decide,
        data={"decision": "approved", "arguments_json": '{"expression": 12}'},
        headers=bearer,
    )
    assert bad.status_code == 400 and "do not fit its schema" in bad.json()["error"]
    edited = await http.post(
        decide,
        data={"decision": "approved", "arguments_json": '{"expression": "6*7"}'},
        headers=bearer,
    )
    assert edited.status_code == 202, edited.text
    denied = await http.post(
        "/approvals/approval_conv-b/decide",
        data={"decision": "denied", "note": "too risky"},
        headers=bearer,
    )
    assert denied.status_code == 202, denied.text
    decided = {
        e.conversation_id: e
        for e in events(
            await read_all_async(
                kafka_bootstrap, topic("approval_decided"), lambda r: len(r) >= 2, 30
            )
        )
    }
    a, b = decided["conv-a"], decided["conv-b"]
    assert (a["decision"], a["operator_id"], a["arguments_json"]) == (
        "approved",
        "bob",
        '{"expression": "6*7"}',
    )
    assert (b["decision"], b["operator_id"], b["note"]) == ("denied", "bob", "too risky")
    await page_until(http, "/approvals", lambda t: "No approval is pending" in t)
    again = await http.post(decide, data={"decision": "denied"}, headers=bearer)
    assert again.status_code == 404


async def test_the_stream_announces_changes_from_kafka(
    kafka_bootstrap: str,
    topic_prefix: str,
    console: tuple[httpx.AsyncClient, CollectorRegistry, Settings],
) -> None:
    http, registry, _ = console
    await signed_in(http)
    async with http.stream("GET", "/stream") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        seen: list[str] = []
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                seen.append(line)
                if len(seen) == 1:
                    assert registry.get_sample_value("pipeline_console_stream_clients") == 1
                    produce_events(
                        kafka_bootstrap, topic_prefix + "message_received", [message("conv-s", "x")]
                    )
                else:
                    break
        assert len(seen) == 2
    page = await page_until(http, "/", lambda text: "conv-s" in text, 5)
    assert "conv-s" in page


async def test_dead_letters_are_listed_and_redriven_once_by_the_operator(
    kafka_bootstrap: str,
    topic_prefix: str,
    console: tuple[httpx.AsyncClient, CollectorRegistry, Settings],
) -> None:
    http, registry, _ = console
    topic = topic_prefix.__add__
    original = message("conv-d", "a message that failed <b>once</b>")
    letter = {
        "source_topic": topic("message_received"),
        "source_partition": 1,
        "source_offset": 41,
        "source_timestamp": None,
        "key": b"conv-d",
        "value": SERDE.encode(original),
        "headers": [{"key": "event-type", "value": b"message_received"}],
        "stage": "handler",
        "error_type": "LLMError",
        "error_message": "the model <i>was</i> down",
        "attempts": 4,
        "service": "agent",
        "handler": "on_message",
        "event_type": "message_received",
        "conversation_id": "conv-d",
        "failed_at": utc_now(),
    }
    produce(
        kafka_bootstrap,
        topic("dead_letters"),
        [("conv-d", SERDE.encode_record(DEAD_LETTER, letter))],
    )
    token = await signed_in(http)
    page = await http.get("/dead-letters")
    assert page.status_code == 200
    assert f"{topic('message_received')}[1]@41" in page.text
    assert "LLMError: the model &lt;i&gt;was&lt;/i&gt; down" in page.text
    (letter_id,) = re.findall(r'data-letter="([^"]+)"', page.text)
    redrive = f"/dead-letters/{letter_id}/redrive"
    assert (await http.post(redrive, data={"csrf_token": token})).status_code == 303
    copies = await read_all_async(kafka_bootstrap, topic("message_received"), bool, 30)
    assert [c.event().id for c in copies] == [original.id]
    again = await http.post(
        redrive, data={"csrf_token": token}, headers={"Accept": "application/json"}
    )
    assert again.status_code == 409
    listed = await http.get("/dead-letters")
    assert "redriven by ada" in listed.text
    assert (
        registry.get_sample_value("pipeline_console_operator_actions_total", {"action": "redrive"})
        == 1
    )

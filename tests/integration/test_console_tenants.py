"""The console with two tenants and three roles on a real broker: every route keeps to the
operator's tenants and role, the live stream says nothing of another tenant, every action
is in the conversation's timeline with the operator's id, and a signed-out or removed
operator's cookie gets the sign-in page on every replica."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.events.catalog import DEAD_LETTER
from pipeline.events.model import Event, Metadata, utc_now
from pipeline.services.console import create_app
from pipeline.services.console.guard import PUBLIC
from pipeline.services.console.passwords import hash_password
from pipeline.services.console.sessions import SESSION_COOKIE
from pipeline.services.console.site import Console
from pipeline.services.console.view import TOPICS
from pipeline.timeline import conversation_timeline, render
from tests.integration.console_support import (
    CONSOLE_TOPICS,
    PASSWORD,
    TOKEN,
    bearer,
    console_settings,
    page_until,
    signed_in,
)
from tests.integration.gateway_support import serving_app
from tests.integration.runtime_support import SERDE, produce, produce_events, read_all_async

MARKER = "only-tenant-one-may-read-this"
ACTION_TOPICS = (
    "handoff_requested",
    "operator_message",
    "handoff_released",
    "approval_decided",
    "tool_outcome_decided",
)


def tenant_event(
    event_type: str, conversation: str, tenant: str, *, step: int = 0, **data: Any
) -> Event:
    """An event of ``tenant`` occurring ``step`` tenths of a second from now."""
    new = Metadata.new(event_type, conversation, tenant_id=tenant, producer="agent")
    metadata = Metadata(
        new.event_id,
        event_type,
        conversation,
        tenant,
        new.correlation_id,
        None,
        new.occurred_at + timedelta(milliseconds=100 * step),
        "agent",
    )
    return Event(metadata, data)


def conversation_of(tenant: str, conversation: str) -> list[Event]:
    """A conversation waiting for a person, with a pending approval and an uncertain call."""
    asked = tenant_event(
        "message_received",
        conversation,
        tenant,
        channel="web",
        sender_id="u",
        text=f"{MARKER if tenant == 't1' else 'hello'} from {conversation}",
        reply_to={"channel": "web", "address": "http://127.0.0.1/cb", "thread_id": None},
        external_id=None,
    )
    return [
        asked,
        tenant_event(
            "handoff_requested",
            conversation,
            tenant,
            step=1,
            requested_by="user",
            reason="asked",
            operator_id=None,
            user_text=None,
        ),
        tenant_event(
            "approval_requested",
            conversation,
            tenant,
            step=2,
            approval_id=f"approval-{conversation}",
            call_id=f"k-{conversation}",
            tool="calculator",
            arguments_json='{"expression": "1+1"}',
            reason="",
            expires_at=utc_now() + timedelta(minutes=10),
        ),
        tenant_event(
            "tool_called",
            conversation,
            tenant,
            step=3,
            call_id=f"call-{conversation}",
            tool="refund",
            arguments_json="{}",
            timeout_ms=1000,
            depth=0,
        ),
        tenant_event(
            "tool_result",
            conversation,
            tenant,
            step=4,
            call_id=f"call-{conversation}",
            tool="refund",
            status="unknown",
            result_json=None,
            error="outcome unknown",
            duration_ms=0,
        ),
    ]


def dead_letter(bootstrap: str, topic: Callable[[str], str], original: Event) -> None:
    letter = {
        "source_topic": topic("message_received"),
        "source_partition": 0,
        "source_offset": 1,
        "source_timestamp": None,
        "key": original.conversation_id.encode(),
        "value": SERDE.encode(original),
        "headers": [{"key": "event-type", "value": b"message_received"}],
        "stage": "handler",
        "error_type": "LLMError",
        "error_message": "the model was down",
        "attempts": 4,
        "service": "agent",
        "handler": "on_message",
        "event_type": "message_received",
        "conversation_id": original.conversation_id,
        "failed_at": utc_now(),
    }
    produce(
        bootstrap,
        topic("dead_letters"),
        [(original.conversation_id, SERDE.encode_record(DEAD_LETTER, letter))],
    )


@pytest.fixture
def topics(make_topics: Callable[..., list[str]]) -> None:
    make_topics(*TOPICS, *CONSOLE_TOPICS, partitions=2)


@pytest.fixture
async def two_tenants(
    kafka_bootstrap: str, topic_prefix: str, topics: None
) -> AsyncIterator[tuple[httpx.AsyncClient, Console, Settings]]:
    """A console whose view holds conversation conv-one of t1 and conv-two of t2, each
    waiting for a person with an approval and an uncertain call, and a dead letter each."""
    topic = topic_prefix.__add__
    settings = console_settings(kafka_bootstrap, topic_prefix)
    stories = conversation_of("t1", "conv-one") + conversation_of("t2", "conv-two")
    for event in stories:
        produce_events(kafka_bootstrap, topic(event.type), [event])
    dead_letter(kafka_bootstrap, topic, stories[0])
    dead_letter(kafka_bootstrap, topic, stories[5])
    app = create_app(settings, registry=CollectorRegistry())
    async with serving_app(app) as http:
        http.headers.update({"Authorization": f"Bearer {TOKEN}"})  # bob: every tenant
        for path in ("/", "/approvals", "/uncertain"):
            await page_until(http, path, lambda t: "conv-one" in t and "conv-two" in t)
        del http.headers["Authorization"]
        yield http, app.state.console, settings


def walked(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route outside PUBLIC, its parameters filled with t1's ids
    (a parameter of another name gets t1's conversation id)."""
    ids = {
        "conversation_id": "conv-one",
        "approval_id": "approval-conv-one",
        "call_id": "call-conv-one",
        "letter_id": "0:0",
    }
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path not in PUBLIC:

            def fill(match: re.Match[str]) -> str:
                return ids.get(match.group(1).split(":")[0], "conv-one")

            path = re.sub(r"\{([^}]+)\}", fill, route.path)
            found += [(method, path) for method in sorted(route.methods)]
    return found


async def test_every_route_keeps_to_the_operators_tenants_and_role(
    kafka_bootstrap: str,
    topic_prefix: str,
    two_tenants: tuple[httpx.AsyncClient, Console, Settings],
) -> None:
    http, _, settings = two_tenants
    topic = topic_prefix.__add__
    letters = await http.get("/dead-letters", headers=bearer("t1-viewer"))
    (t1_letter,) = re.findall(r'data-letter="([^"]+)"', letters.text)
    routes = walked(create_app(settings))
    assert len(routes) >= 14, routes
    forms = {
        "/reply": {"text": "from another tenant"},
        "/approvals/": {"decision": "approved"},
        "/uncertain/": {"outcome": "done"},
    }
    for method, path in routes:
        path = path.replace("/dead-letters/0:0/", f"/dead-letters/{t1_letter}/")
        form = next((f for k, f in forms.items() if k in path), {})
        if path == "/stream":
            async with http.stream("GET", path, headers=bearer("t2-admin")) as stream:
                assert stream.status_code == 200
            continue
        if method == "GET":
            answer = await http.get(path, headers=bearer("t2-admin"))
            assert answer.status_code in (200, 404), (path, answer.status_code)
            assert MARKER not in answer.text and ">t1<" not in answer.text, path
            assert "approval-conv-one" not in answer.text or answer.status_code == 404, path
            continue
        if path == "/signout":
            continue
        # Another tenant's admin: not found, as for what does not exist; nothing produced.
        answer = await http.post(path, data=form, headers=bearer("t2-admin"))
        assert answer.status_code == 404, (path, answer.text)
        # The tenant's own viewer: forbidden.
        answer = await http.post(path, data=form, headers=bearer("t1-viewer"))
        assert answer.status_code == 403, (path, answer.text)
    for name in ACTION_TOPICS:
        stored = await read_all_async(kafka_bootstrap, topic(name), lambda _: False, 1)
        by_operators = [r for r in stored if r.event().metadata.producer == "console"]
        assert by_operators == [], f"{name}: a refused action was produced"
    redriven = await read_all_async(kafka_bootstrap, topic("dead_letter_redrives"), bool, 1)
    assert redriven == []


async def test_the_stream_never_announces_another_tenants_change(
    kafka_bootstrap: str,
    topic_prefix: str,
    two_tenants: tuple[httpx.AsyncClient, Console, Settings],
) -> None:
    http, console, _ = two_tenants
    topic = topic_prefix.__add__
    announced: list[str] = []

    async def listen() -> None:
        async with http.stream("GET", "/stream", headers=bearer("t1-viewer")) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    announced.append(line)

    listener = asyncio.create_task(listen())
    try:
        await wait_until(lambda: len(announced) == 1)
        other = conversation_of("t2", "conv-other")[0]
        produce_events(kafka_bootstrap, topic("message_received"), [other])
        await wait_until(lambda: "conv-other" in console.view.conversations)
        await asyncio.sleep(1.0)
        assert len(announced) == 1, "another tenant's change was announced"
        mine = conversation_of("t1", "conv-mine")[0]
        produce_events(kafka_bootstrap, topic("message_received"), [mine])
        await wait_until(lambda: len(announced) == 2)
    finally:
        listener.cancel()


async def test_every_action_is_in_the_timeline_with_the_operator_id(
    kafka_bootstrap: str,
    topic_prefix: str,
    two_tenants: tuple[httpx.AsyncClient, Console, Settings],
) -> None:
    http, _, settings = two_tenants
    topic = topic_prefix.__add__
    token = await signed_in(http, "carol")
    base = "/conversations/conv-one"
    for path, data in (
        # Decided first: taking the conversation closes its pending approvals.
        ("/approvals/approval-conv-one/decide", {"decision": "denied", "note": "no"}),
        ("/uncertain/call-conv-one/decide", {"outcome": "failed", "back": base}),
        (f"{base}/take", {}),
        (f"{base}/reply", {"text": "Carol here."}),
        (f"{base}/release", {"note": "done"}),
    ):
        answer = await http.post(path, data={**data, "csrf_token": token})
        assert answer.status_code == 303, (path, answer.text)
    carol = dict(http.cookies)
    http.cookies.clear()  # a bearer client, not carol's session
    letters = await http.get("/dead-letters", headers=bearer("t1-admin"))
    (letter,) = re.findall(r'data-letter="([^"]+)"', letters.text)
    redrive = await http.post(f"/dead-letters/{letter}/redrive", headers=bearer("t1-admin"))
    assert redrive.status_code == 202, redrive.text
    http.cookies.update(carol)
    await read_all_async(kafka_bootstrap, topic("handoff_released"), bool, 30)

    async def timeline_shows_all() -> str:
        for _ in range(100):
            page = (await http.get(f"{base}/timeline")).text
            if page.count('<td class="operator">carol</td>') == 5 and "t1-admin" in page:
                return page
            await asyncio.sleep(0.2)
        raise AssertionError(page)

    page = await timeline_shows_all()
    for shown in ("denied by carol: no", "refund failed by carol", "by carol: Carol here."):
        assert shown in page, shown
    assert "(redriven by t1-admin)" in page
    entries = await asyncio.to_thread(conversation_timeline, settings, SERDE, "conv-one")
    printed = render(entries)
    for shown in ("by carol: Carol here.", "denied by carol", "by carol: done"):
        assert shown in printed, shown
    assert "(redriven by t1-admin)" in printed
    assert {
        json.loads(line)["operator"] for line in render(entries, as_json=True).splitlines()
    } >= {
        "carol",
        "t1-admin",
    }
    # The other tenant's admin gets nothing of it.
    http.cookies.clear()
    theirs = await http.get(f"{base}/timeline", headers=bearer("t2-admin"))
    assert theirs.status_code == 404 and "carol" not in theirs.text


async def wait_until(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.05)


async def test_a_signed_out_or_removed_operators_cookie_gets_the_sign_in_page_everywhere(
    kafka_bootstrap: str, topic_prefix: str, topics: None, tmp_path: Path
) -> None:
    secret = tmp_path / "operators.json"
    cheap = hash_password(PASSWORD, time_cost=1, memory_cost=8192)
    secret.write_text(json.dumps({"dave": {"password_hash": cheap}}))
    settings = console_settings(
        kafka_bootstrap,
        topic_prefix,
        operators_file=str(secret),
        operators_reload_seconds=0.2,
    )
    async with AsyncExitStack() as stack:
        replicas = [
            await stack.enter_async_context(
                serving_app(create_app(settings, registry=CollectorRegistry()))
            )
            for _ in range(2)
        ]
        first = replicas[0]
        for replica in replicas:
            ready = await replica.get("/readyz")
            for _ in range(100):
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.2)
                ready = await replica.get("/readyz")
            assert ready.status_code == 200, ready.text
        html = {"Accept": "text/html"}

        async def cookie_of(operator: str) -> dict[str, str]:
            await signed_in(first, operator)
            value = first.cookies[SESSION_COOKIE]
            first.cookies.clear()  # from here on sent explicitly, as someone who kept it
            return {"Cookie": f"{SESSION_COOKIE}={value}"}

        async def signed_out(replica: httpx.AsyncClient, cookie: dict[str, str]) -> bool:
            for _ in range(100):
                page = await replica.get("/inbox", headers={**cookie, **html})
                if page.status_code == 303 and page.headers["location"].startswith("/signin"):
                    return True
                await asyncio.sleep(0.1)
            return False

        carol = await cookie_of("carol")
        for replica in replicas:
            assert (await replica.get("/inbox", headers=carol)).status_code == 200
        page = await first.get("/inbox", headers=carol)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        out = await first.post("/signout", data={"csrf_token": token.group(1)}, headers=carol)
        assert out.status_code == 303
        for replica in replicas:
            assert await signed_out(replica, carol), "the signed-out cookie still works"
        # A removed operator: signed in on both, then taken out of the operators file.
        dave = await cookie_of("dave")
        for replica in replicas:
            assert (await replica.get("/inbox", headers=dave)).status_code == 200
        secret.write_text("{}")
        for replica in replicas:
            assert await signed_out(replica, dave), "the removed operator's cookie still works"

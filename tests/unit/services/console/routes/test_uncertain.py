"""The uncertain actions' page and decisions through the console app (ASGI, the guard in
front, events produced to a memory broker): listed with their arguments, marked done or
failed as ``tool_outcome_decided`` with the operator's id, refused when unknown, decided
already or not JSON, and answered as the approvals are (a redirect for a browser, JSON
for a bearer client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import CollectorRegistry

from pipeline.config import Settings, bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.memory_transport import MemoryBroker, MemoryProducer
from pipeline.runtime.publisher import Publisher
from pipeline.services.console import create_app
from pipeline.services.console.sessions import SESSION_COOKIE
from pipeline.services.console.site import Console
from tests.unit.services.console.view_events import called, event, result

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
TOKEN = "api-token-of-bob"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class ConsoleRun:
    http: httpx.AsyncClient
    console: Console
    broker: MemoryBroker
    registry: CollectorRegistry

    def decisions(self) -> list[Event]:
        return [SERDE.decode(r.value() or b"") for r in self.broker.records("tool_outcome_decided")]

    def actions(self, action: str) -> float | None:
        return self.registry.get_sample_value(
            "pipeline_console_operator_actions_total", {"action": action}
        )


@pytest.fixture
async def run() -> AsyncIterator[ConsoleRun]:
    settings = Settings(
        metrics_port=0,
        console={
            "operators": {"bob": {"token": TOKEN}, "ada": {"token": "api-token-of-ada"}},
            "session_secret": "test-session-secret",
            "cookie_secure": False,
        },
    )
    broker = MemoryBroker()
    producer = MemoryProducer(broker, asyncio.get_running_loop())
    publisher = Publisher(settings, producer, SERDE, "console")
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry, publisher=publisher)
    console: Console = app.state.console
    # The lifespan (the Kafka reader) does not run over ASGITransport: the test folds.
    console.view.apply_all(
        [
            event("message_received", 0, channel="web", sender_id="u", text="refund order 1234"),
            called(1),
            result(2),
        ]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as http:
        yield ConsoleRun(http, console, broker, registry)


async def test_the_page_and_the_conversation_list_the_call_with_its_arguments(
    run: ConsoleRun,
) -> None:
    assert (await run.http.get("/uncertain")).status_code == 401, "the guard stands in front"
    page = await run.http.get("/uncertain", headers=BEARER)
    assert page.status_code == 200
    assert 'data-call="call-1"' in page.text
    assert "refund" in page.text and "outcome unknown: the tools service stopped" in page.text
    assert "{&#34;order&#34;: &#34;1234&#34;, &#34;amount&#34;: 20}" in page.text
    assert 'action="/uncertain/call-1/decide"' in page.text
    assert 'href="/uncertain"' in page.text, "linked from the navigation"
    conversation = await run.http.get("/conversations/c1", headers=BEARER)
    assert 'data-call="call-1"' in conversation.text
    assert 'name="back" value="/conversations/c1"' in conversation.text
    fragment = await run.http.get("/uncertain", headers={**BEARER, "X-Console-Fragment": "1"})
    assert 'data-call="call-1"' in fragment.text and "<html" not in fragment.text


async def test_marking_done_is_an_event_with_the_operator_and_closes_the_call(
    run: ConsoleRun,
) -> None:
    form = {"outcome": "done", "note": " refunded in the shop ", "result_json": '{"id": "r-7"}'}
    answer = await run.http.post("/uncertain/call-1/decide", data=form, headers=BEARER)
    assert answer.status_code == 202, answer.text
    (decided,) = run.decisions()
    assert answer.json() == {"event_id": str(decided.id), "event_type": "tool_outcome_decided"}
    assert decided.data == {
        "call_id": "call-1",
        "tool": "refund",
        "outcome": "done",
        "operator_id": "bob",
        "result_json": '{"id": "r-7"}',
        "note": "refunded in the shop",
    }
    assert (decided.conversation_id, decided.metadata.tenant_id) == ("c1", "t1")
    assert run.console.view.conversations["c1"].uncertain.decided == {"call-1"}
    assert decided.metadata.producer == "console"
    assert run.actions("mark_done") == 1 and run.actions("mark_failed") == 0
    page = await run.http.get("/uncertain", headers=BEARER)
    assert 'id="no-uncertain"' in page.text
    again = await run.http.post(
        "/uncertain/call-1/decide", data={"outcome": "failed"}, headers=BEARER
    )
    assert again.status_code == 404 and "decided already" in again.json()["error"]
    assert len(run.decisions()) == 1


async def test_the_decision_is_caused_by_the_unknown_result(run: ConsoleRun) -> None:
    (listed,) = run.console.view.uncertain_calls()
    answer = await run.http.post(
        "/uncertain/call-1/decide", data={"outcome": "failed"}, headers=BEARER
    )
    assert answer.status_code == 202
    (decided,) = run.decisions()
    assert decided["outcome"] == "failed" and decided["note"] is None
    assert decided["result_json"] is None
    assert decided.metadata.causation_id == listed.result.id
    assert decided.metadata.correlation_id == listed.result.metadata.correlation_id
    assert run.actions("mark_failed") == 1


@pytest.mark.parametrize(
    ("path", "form", "status", "reason"),
    [
        ("/uncertain/call-9/decide", {"outcome": "done"}, 404, "no tool call 'call-9'"),
        ("/uncertain/call-1/decide", {"outcome": "maybe"}, 400, "done or failed"),
        ("/uncertain/call-1/decide", {"outcome": "done", "result_json": "{"}, 400, "not JSON"),
        ("/uncertain/call-1/decide", {}, 400, "outcome"),
    ],
)
async def test_a_refused_decision_produces_nothing_and_leaves_the_call_listed(
    run: ConsoleRun, path: str, form: dict[str, str], status: int, reason: str
) -> None:
    answer = await run.http.post(path, data=form, headers=BEARER)
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["error"]
    assert run.decisions() == []
    assert [u.call_id for u in run.console.view.uncertain_calls()] == ["call-1"]


async def test_a_browser_goes_back_to_its_page_and_needs_its_csrf_token(run: ConsoleRun) -> None:
    session, cookie = run.console.sessions.new("ada")
    run.http.cookies.set(SESSION_COOKIE, cookie)
    form = {"outcome": "done", "back": "/conversations/c1"}
    refused = await run.http.post("/uncertain/call-1/decide", data=form)
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert run.decisions() == []
    answer = await run.http.post(
        "/uncertain/call-1/decide", data={**form, "csrf_token": session.csrf}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/conversations/c1"
    (decided,) = run.decisions()
    assert decided["operator_id"] == "ada"
    # A refusal is the error page for a browser's form.
    again = await run.http.post(
        "/uncertain/call-1/decide", data={**form, "csrf_token": session.csrf}
    )
    assert again.status_code == 404 and "decided already" in again.text
    assert again.headers["content-type"].startswith("text/html")


async def test_a_browser_is_never_sent_off_the_site(run: ConsoleRun) -> None:
    session, cookie = run.console.sessions.new("ada")
    run.http.cookies.set(SESSION_COOKIE, cookie)
    form = {"outcome": "failed", "back": "https://evil.example/", "csrf_token": session.csrf}
    answer = await run.http.post("/uncertain/call-1/decide", data=form)
    assert answer.status_code == 303 and answer.headers["location"] == "/"

"""Operators scoped to tenants, with roles, through the console app (ASGI, the guard in
front, events produced to a memory broker): two tenants' conversations, approvals and
uncertain calls in view; an operator of t1 sees none of t2's and acts on none (404, as
for what does not exist, nothing produced); a viewer acts on nothing (403); an operator
configured the old way sees every tenant as an admin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry

from pipeline.config import Settings, bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.memory_transport import MemoryBroker, MemoryProducer
from pipeline.runtime.publisher import Publisher
from pipeline.services.console import create_app
from pipeline.services.console.access import Access
from pipeline.services.console.app import check_scoped
from pipeline.services.console.site import Console
from tests.unit.services.console.view_events import T0, called, event, result

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
OPERATORS = {
    "t1-agent": {"token": "tok-t1-agent", "tenants": ["t1"], "role": "agent"},
    "t1-viewer": {"token": "tok-t1-viewer", "tenants": ["t1"], "role": "viewer"},
    "t2-admin": {"token": "tok-t2-admin", "tenants": ["t2"], "role": "admin"},
    "old-style": {"token": "tok-old"},
}
ACTION_TOPICS = ("handoff_requested", "operator_message", "handoff_released")
DECISION_TOPICS = ("approval_decided", "tool_outcome_decided")


def bearer(operator: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATORS[operator]['token']}"}


def story(conversation: str, tenant: str) -> list[Event]:
    """A conversation waiting for a person, with a pending approval and an uncertain call."""
    return [
        event(
            "message_received",
            0,
            conversation,
            tenant=tenant,
            channel="web",
            sender_id="u",
            text=f"secret of {tenant}",
        ),
        event(
            "handoff_requested",
            1,
            conversation,
            tenant=tenant,
            requested_by="user",
            reason="asked",
            operator_id=None,
            user_text=None,
        ),
        event(
            "approval_requested",
            2,
            conversation,
            tenant=tenant,
            approval_id=f"approval-{tenant}",
            call_id=f"k-{tenant}",
            tool="calculator",
            arguments_json="{}",
            reason="",
            expires_at=T0 + timedelta(hours=1),
        ),
        called(3, f"call-{tenant}", conversation, tenant),
        result(4, "unknown", f"call-{tenant}", conversation, tenant),
    ]


@dataclass
class Run:
    http: httpx.AsyncClient
    console: Console
    broker: MemoryBroker

    def produced(self, *topics: str) -> list[Event]:
        return [SERDE.decode(r.value() or b"") for t in topics for r in self.broker.records(t)]


@pytest.fixture
async def run() -> AsyncIterator[Run]:
    settings = Settings(
        metrics_port=0,
        console={
            "operators": OPERATORS,
            "session_secret": "test-session-secret",
            "cookie_secure": False,
        },
    )
    broker = MemoryBroker()
    publisher = Publisher(
        settings, MemoryProducer(broker, asyncio.get_running_loop()), SERDE, "console"
    )
    app = create_app(settings, registry=CollectorRegistry(), publisher=publisher)
    console: Console = app.state.console
    console.view.apply_all([*story("conv-one", "t1"), *story("conv-two", "t2")])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as http:
        yield Run(http, console, broker)


@pytest.mark.parametrize("page", ["/", "/inbox", "/approvals", "/uncertain"])
async def test_a_page_lists_only_the_operators_tenants(run: Run, page: str) -> None:
    mine = await run.http.get(page, headers=bearer("t1-agent"))
    assert mine.status_code == 200
    assert "conv-one" in mine.text
    assert "conv-two" not in mine.text and "t2" not in mine.text
    theirs = await run.http.get(page, headers=bearer("t2-admin"))
    assert "conv-two" in theirs.text and "conv-one" not in theirs.text
    everyone = await run.http.get(page, headers=bearer("old-style"))
    assert "conv-one" in everyone.text and "conv-two" in everyone.text


async def test_the_conversation_list_offers_only_the_operators_tenants() -> None:
    who = Access("ada", "viewer", frozenset({"t1", "t3"}))
    assert who.tenant_choices(["t2", "t1", "t1", "t4"]) == ["t1"]
    assert Access("bob", "admin", None).tenant_choices(["t2", "t1"]) == ["t1", "t2"]


async def test_another_tenants_conversation_is_not_found_like_one_that_does_not_exist(
    run: Run,
) -> None:
    for path in ("/conversations/conv-two", "/conversations/conv-two/timeline"):
        theirs = await run.http.get(path, headers=bearer("t1-agent"))
        assert theirs.status_code == 404, path
        assert "conv-two" in theirs.json()["error"] and "t2" not in theirs.text
    none = await run.http.get("/conversations/conv-none", headers=bearer("t1-agent"))
    assert none.status_code == 404
    assert none.json()["error"] == "no conversation 'conv-none' in the console's view"
    mine = await run.http.get("/conversations/conv-one", headers=bearer("t1-agent"))
    assert mine.status_code == 200 and "secret of t1" in mine.text


ACTIONS = [
    ("/conversations/conv-two/take", {}),
    ("/conversations/conv-two/reply", {"text": "hello from t1"}),
    ("/conversations/conv-two/release", {}),
    ("/approvals/approval-t2/decide", {"decision": "approved"}),
    ("/uncertain/call-t2/decide", {"outcome": "done"}),
]


@pytest.mark.parametrize(("path", "form"), ACTIONS)
async def test_an_operator_acts_on_no_other_tenants_conversation(
    run: Run, path: str, form: dict[str, str]
) -> None:
    answer = await run.http.post(path, data=form, headers=bearer("t1-agent"))
    assert answer.status_code == 404, answer.text
    assert "t2" not in answer.json()["error"].replace("approval-t2", "").replace("call-t2", "")
    assert run.produced(*ACTION_TOPICS, *DECISION_TOPICS) == []
    # The same action on the operator's own tenant is produced, with the operator's id.
    own = path.replace("conv-two", "conv-one").replace("-t2", "-t1")
    done = await run.http.post(own, data=form, headers=bearer("t1-agent"))
    assert done.status_code == 202, done.text
    (produced,) = run.produced(*ACTION_TOPICS, *DECISION_TOPICS)
    assert produced["operator_id"] == "t1-agent"
    assert (produced.conversation_id, produced.metadata.tenant_id) == ("conv-one", "t1")


@pytest.mark.parametrize(("path", "form"), ACTIONS)
async def test_a_viewer_acts_on_nothing(run: Run, path: str, form: dict[str, str]) -> None:
    own = path.replace("conv-two", "conv-one").replace("-t2", "-t1")
    answer = await run.http.post(own, data=form, headers=bearer("t1-viewer"))
    assert answer.status_code == 403, answer.text
    assert "t1-viewer is a viewer" in answer.json()["error"]
    assert run.produced(*ACTION_TOPICS, *DECISION_TOPICS) == []
    refused = run.console.metrics.refused.labels("forbidden")._value.get()
    assert refused == 1


async def test_a_viewer_is_shown_no_forms_and_only_an_admin_may_redrive(run: Run) -> None:
    for page in ("/conversations/conv-one", "/approvals", "/uncertain"):
        seen = await run.http.get(page, headers=bearer("t1-viewer"))
        assert seen.status_code == 200 and "conv-one" in seen.text
        assert '<form method="post"' not in seen.text and 'id="take"' not in seen.text, page
        acting = await run.http.get(page, headers=bearer("t1-agent"))
        assert '<form method="post"' in acting.text or 'id="take"' in acting.text, page
    for operator in ("t1-viewer", "t1-agent"):
        refused = await run.http.post("/dead-letters/0:1/redrive", headers=bearer(operator))
        assert refused.status_code == 403
        assert "takes the admin role" in refused.json()["error"]


async def test_the_stream_counts_only_the_changes_an_operator_sees(run: Run) -> None:
    view = run.console.view
    t1 = Access("a", "agent", frozenset({"t1"}))
    before = view.changes_seen_by(t1), view.changes_seen_by(Access("b", "admin", None))
    view.apply(event("message_received", 9, "conv-two", tenant="t2", channel="web", text="x"))
    assert view.changes_seen_by(t1) == before[0]
    assert view.changes_seen_by(Access("b", "admin", None)) == before[1] + 1
    view.apply(event("message_received", 9, "conv-one", tenant="t1", channel="web", text="y"))
    assert view.changes_seen_by(t1) == before[0] + 1


def test_operators_configured_without_tenants_and_role_are_admins_of_every_tenant() -> None:
    settings = Settings(console={"operators": {"ada": {"token": "t"}}})
    entry = settings.console.operators["ada"]
    assert (entry.tenants, entry.role, entry.unscoped) == (["*"], "admin", True)
    access = Access.of("ada", entry)
    assert access.all_tenants and access.may("admin") and access.sees("any-tenant")
    scoped = Settings(console={"operators": {"bo": {"token": "t", "tenants": ["t1"]}}})
    assert not scoped.console.operators["bo"].unscoped
    with pytest.raises(ValueError, match="not both"):
        Settings(console={"operators": {"cy": {"token": "t", "tenants": ["*", "t1"]}}})
    with pytest.raises(ValueError, match="role"):
        Settings(console={"operators": {"cy": {"token": "t", "role": "owner"}}})


def test_an_app_with_a_route_that_takes_no_scope_is_refused() -> None:
    app = create_app(Settings(metrics_port=0))
    check_scoped(app)  # every route of the console takes it
    forgetful = APIRouter()

    @forgetful.get("/quality")
    async def quality(request: Request) -> Response:
        return Response("every tenant's numbers")

    app.router.routes.extend(forgetful.routes)
    with pytest.raises(TypeError, match="GET /quality"):
        check_scoped(app)

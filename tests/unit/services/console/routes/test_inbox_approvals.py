"""Approvals through the console app: a decision carries the note for the customer and
the internal reason apart, and a refused edit shows the form again with what the operator
typed and why, producing nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from markupsafe import escape

from pipeline.events.model import utc_now
from pipeline.llm.base import ToolSpec
from pipeline.toolbox.tool_offer import StaticOffer
from tests.unit.services.console.routes.console_run import ConsoleRun, console_run
from tests.unit.services.console.view_events import event, handled

CALCULATOR = ToolSpec(
    "calculator",
    "Evaluate arithmetic.",
    {
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
        "additionalProperties": False,
    },
)


@pytest.fixture
async def run() -> AsyncIterator[ConsoleRun]:
    asked = event(
        "approval_requested",
        0,
        approval_id="approval-1",
        call_id="call-1",
        tool="calculator",
        arguments_json='{"expression": "12*7"}',
        reason="the user asked",
        expires_at=utc_now() + timedelta(minutes=10),
    )
    async with console_run([asked]) as run:
        run.console.actions.tools = StaticOffer([CALCULATOR])
        yield run


async def test_a_denial_carries_the_customers_note_and_the_internal_reason_apart(
    run: ConsoleRun,
) -> None:
    page = await run.browser.get("/approvals")
    assert 'name="note"' in page.text and 'name="internal_reason"' in page.text
    form = {
        "decision": "denied",
        "note": " We cannot run this today. ",
        "internal_reason": " the account is under review ",
    }
    answer = await run.http.post("/approvals/approval-1/decide", data=form)
    assert answer.status_code == 202, answer.text
    (decided,) = run.produced("approval_decided")
    assert decided["note"] == "We cannot run this today."
    assert decided["internal_reason"] == "the account is under review"
    assert decided["operator_id"] == "bob"


async def test_a_refused_edit_shows_the_form_again_with_what_was_typed(run: ConsoleRun) -> None:
    typed = {
        "decision": "approved",
        "arguments_json": '{"expression": 12, "extra": "<b>mine</b>"}',
        "note": "Running it with <i>your</i> numbers",
        "internal_reason": "checked with the customer on the phone",
    }
    answer = await run.form("/approvals/approval-1/decide", **typed)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")
    text = answer.text
    assert str(escape(typed["arguments_json"])) in text
    assert f'value="{escape(typed["note"])}"' in text
    assert f'value="{typed["internal_reason"]}"' in text
    assert "do not fit its schema" in text and 'class="error form-error"' in text
    assert 'data-hold="1"' in text, "the live refresh keeps the typed form"
    assert "<b>mine</b>" not in text and "<i>your</i>" not in text
    assert run.produced("approval_decided") == []
    # An API client still gets the reason as JSON.
    refused = await run.http.post("/approvals/approval-1/decide", data=typed)
    assert refused.status_code == 400 and "do not fit" in refused.json()["error"]


async def test_a_decision_on_an_approval_no_longer_pending_says_so_above_the_list(
    run: ConsoleRun,
) -> None:
    answer = await run.form("/approvals/approval-9/decide", decision="denied", note="no")
    assert answer.status_code == 404
    assert 'id="notice"' in answer.text and "no pending approval" in answer.text
    assert 'id="approval-1"' in answer.text, "the pending ones are still listed"


async def test_an_approval_is_confirmed_and_then_says_what_the_agent_made_of_it(
    run: ConsoleRun,
) -> None:
    answer = await run.form("/approvals/approval-1/decide", decision="approved")
    assert answer.status_code == 303 and answer.headers["location"] == "/approvals"
    (decided,) = run.produced("approval_decided")
    page = (await run.browser.get("/approvals")).text
    assert 'id="confirmation"' in page and "Approval decision by ada" in page
    assert "waiting for the agent to take it" in page and 'id="no-approvals"' in page
    run.console.view.apply(
        handled(3, decided, "ignored", "the approval was decided before, or expired")
    )
    live = await run.browser.get(
        "/approvals", headers={"X-Console-Fragment": "1", "X-Console-Done": str(decided.id)}
    )
    assert 'data-status="ignored"' in live.text
    assert "ignored by the agent: the approval was decided before, or expired" in live.text

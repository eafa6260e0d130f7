"""A conversation's page through the console app: an operator's action is confirmed on
the page it goes back to, which then says live what became of it (waiting for the agent,
taken, refused with the reason), and the page lists only what the agent took."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline.services.console.site import DONE_COOKIE
from tests.unit.services.console.routes.console_run import ConsoleRun, console_run
from tests.unit.services.console.test_operator_actions import letter
from tests.unit.services.console.view_events import event, handled

PAGE = "/conversations/c1"
FRAGMENT = {"X-Console-Fragment": "1"}


@pytest.fixture
async def run() -> AsyncIterator[ConsoleRun]:
    story = [  # a minute before the operator acts
        event("message_received", -61, channel="web", sender_id="u", text="help"),
        event("handoff_requested", -60, requested_by="user", reason="asked", operator_id=None),
    ]
    async with console_run(story) as run:
        yield run


async def test_a_reply_is_confirmed_then_shown_once_the_agent_took_it(run: ConsoleRun) -> None:
    answer = await run.form(f"{PAGE}/reply", text="Hello, Ada here.")
    assert answer.status_code == 303 and answer.headers["location"] == PAGE
    (wrote,) = run.produced("operator_message")
    assert DONE_COOKIE in answer.cookies
    page = await run.browser.get(PAGE)
    assert 'id="confirmation"' in page.text and 'data-status="sent"' in page.text
    assert "Reply by ada" in page.text and "waiting for the agent to take it" in page.text
    assert f'data-done="{wrote.id}"' in page.text, "kept for the live refreshes"
    assert "Hello, Ada here." not in page.text.split('id="messages"')[1].split("</div>")[0]
    assert "waiting for a person" in page.text, "nothing changed yet"
    assert DONE_COOKIE not in run.browser.cookies, "confirmed once"

    run.console.view.apply(handled(5, wrote))
    done = {**FRAGMENT, "X-Console-Done": str(wrote.id)}
    fragment = (await run.browser.get(PAGE, headers=done)).text
    assert 'data-status="accepted"' in fragment and "taken by the agent" in fragment
    assert 'class="msg msg-operator"' in fragment and "Hello, Ada here." in fragment
    assert "with a person" in fragment
    # Another page load is not a confirmation any more.
    assert 'id="confirmation"' not in (await run.browser.get(PAGE)).text


async def test_a_reply_the_agent_refused_says_so_and_changes_nothing(run: ConsoleRun) -> None:
    await run.form(f"{PAGE}/reply", text="Hello?")
    (wrote,) = run.produced("operator_message")
    reason = "operator_message names conversation 'c1', which the agent does not have; refused"
    run.console.view.dead_lettered(letter(wrote, reason), wrote)
    done = {**FRAGMENT, "X-Console-Done": str(wrote.id)}
    fragment = (await run.browser.get(PAGE, headers=done)).text
    assert 'data-status="refused"' in fragment
    assert f"refused: agent: {reason}. Nothing changed." in fragment.replace("&#39;", "'")
    assert 'class="action action-refused error"' in fragment
    assert "waiting for a person" in fragment and 'class="msg msg-operator"' not in fragment
    # An API client reads the same from the page it asks for.
    assert "refused" in (await run.http.get(PAGE)).text


async def test_a_take_and_a_release_are_confirmed(run: ConsoleRun) -> None:
    took = await run.form(f"{PAGE}/take")
    assert took.status_code == 303
    page = (await run.browser.get(PAGE)).text
    assert "Take by ada" in page and 'data-status="recorded"' in page and "with a person" in page
    released = await run.form(f"{PAGE}/release", note="sorted")
    assert released.status_code == 303
    (release,) = run.produced("handoff_released")
    page = (await run.browser.get(PAGE)).text
    assert "Release by ada" in page and "waiting for the agent" in page
    assert "with a person" in page, "with a person until the agent takes the release"
    run.console.view.apply(handled(9, release))
    assert "with the agent" in (await run.browser.get(PAGE, headers=FRAGMENT)).text

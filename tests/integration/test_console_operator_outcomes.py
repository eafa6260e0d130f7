"""The console shows only what the agent accepted, on a real broker with the real agent:
an operator's reply the agent refuses (a conversation it does not have) is shown refused
with the agent's reason on the page that made it and on the live stream, and the
conversation's state there does not change; the refusal is a dead letter that appears on
the open dead-letters page by itself, and its redrive is confirmed. A reply and a release
the agent takes change the conversation once it took them."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.services.agent import assemble
from pipeline.services.console import create_app
from pipeline.services.console.view import TOPICS
from tests.integration.console_support import (
    BROWSER,
    CONSOLE_TOPICS,
    console_settings,
    listening,
    page_until,
    signed_in,
)
from tests.integration.gateway_support import serving_app
from tests.integration.runtime_support import message, produce_events, running

AGENT_TOPICS = ("timer_requested", "context_updated", "agent_state_changelog", "tools_journal")
REFUSAL = "which the agent does not have"


@pytest.fixture
async def console(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    make_topics(*TOPICS, *CONSOLE_TOPICS, *AGENT_TOPICS, partitions=2)
    settings = console_settings(kafka_bootstrap, topic_prefix)
    async with running(assemble(settings)[0]), serving_app(create_app(settings)) as http:
        yield http, settings


async def until(what: str, check: Callable[[], object], seconds: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.1)


def heard_of(heard: list[tuple[str, str]], kind: str) -> list[dict[str, str]]:
    return [json.loads(data) for k, data in heard if k == kind]


def state(page: str) -> str:
    found = re.search(r'id="state">([^<]+)<', page)
    assert found, page
    return found.group(1)


async def test_a_refused_reply_is_shown_refused_and_changes_nothing(
    kafka_bootstrap: str, topic_prefix: str, console: tuple[httpx.AsyncClient, Settings]
) -> None:
    http, _ = console
    topic = topic_prefix.__add__
    # A conversation the console sees waiting for a person, which the agent does not have
    # (its state lost, say): the agent refuses what an operator does in it.
    asking = message("conv-lost", "a person please")
    handed = Event(
        asking.metadata.caused("handoff_requested", producer="agent"),
        {"requested_by": "user", "reason": "asked", "operator_id": None, "user_text": None},
    )
    produce_events(kafka_bootstrap, topic("handoff_requested"), [handed])
    token = await signed_in(http)
    http.headers["Accept"] = BROWSER
    page = "/conversations/conv-lost"
    await page_until(http, page, lambda text: "waiting for a person" in text)
    letters_before = (await http.get("/dead-letters")).text.count("data-letter=")

    async with listening(http) as heard:
        await until("the stream opened", lambda: heard)
        reply = await http.post(f"{page}/reply", data={"text": "Hello?", "csrf_token": token})
        assert reply.status_code == 303 and reply.headers["location"] == page
        sent = (await http.get(page)).text
        assert 'data-status="sent"' in sent and "waiting for the agent to take it" in sent
        done = re.search(r'data-done="([^"]+)"', sent)
        assert done and done.group(1)

        # The live stream says the agent refused it, with the agent's reason.
        await until("the stream said refused", lambda: heard_of(heard, "refused"))
        (refused,) = heard_of(heard, "refused")
        assert refused["action_id"] == done.group(1)
        assert (refused["action"], refused["conversation_id"]) == ("operator_message", page[15:])
        assert refused["what"] == "reply by ada" and REFUSAL in refused["reason"]
        # So does the page that made it (its live part, as the page's script asks for it).
        headers = {"X-Console-Fragment": "1", "X-Console-Done": done.group(1)}
        live = (await http.get(page, headers=headers)).text
        assert 'data-status="refused"' in live and REFUSAL in live.replace("&#39;", "'")
        assert 'class="action action-refused error"' in live
        # Nothing changed: still waiting for a person, and no operator message listed.
        assert state(live) == "waiting for a person"
        messages = live.split('id="messages"')[1].split("<h2>Operator actions</h2>")[0]
        assert 'class="msg msg-operator"' not in messages and "Hello?" not in messages
        assert "conv-lost" in (await http.get("/inbox")).text

        # The refusal is a dead letter, which the open dead-letters page hears of.
        await until("the stream said dead letters", lambda: heard_of_letters(heard) >= 1)
        listed = (await http.get("/dead-letters", headers={"X-Console-Fragment": "1"})).text
        assert listed.count("data-letter=") == letters_before + 1
        (letter_id,) = re.findall(
            r'<tr data-letter="([^"]+)">\s*<td><code>[^<]+</code></td>'
            r"<td>[^<]*</td>\s*<td>[^<]*operator_message",
            listed,
        )
        redrive = await http.post(f"/dead-letters/{letter_id}/redrive", data={"csrf_token": token})
        assert redrive.status_code == 303 and redrive.headers["location"] == "/dead-letters"
        confirmed = (await http.get("/dead-letters")).text
        assert f"Letter {letter_id} redriven by ada" in confirmed
        # Redriven, the reply is refused again: a second letter, heard of by the page.
        await until("a second refusal", lambda: len(heard_of(heard, "refused")) == 2)
        await until("the stream said dead letters again", lambda: heard_of_letters(heard) >= 2)
    assert state((await http.get(page)).text) == "waiting for a person"


def heard_of_letters(heard: list[tuple[str, str]]) -> int:
    return sum(kind == "dead-letters" for kind, _ in heard)


async def test_a_reply_and_a_release_the_agent_takes_change_the_conversation(
    kafka_bootstrap: str, topic_prefix: str, console: tuple[httpx.AsyncClient, Settings]
) -> None:
    http, _ = console
    topic = topic_prefix.__add__
    produce_events(
        kafka_bootstrap, topic("message_received"), [message("conv-ok", "talk to a human")]
    )
    token = await signed_in(http)
    http.headers["Accept"] = BROWSER
    page = "/conversations/conv-ok"
    await page_until(http, page, lambda text: "waiting for a person" in text, 60)

    reply = await http.post(f"{page}/reply", data={"text": "Ada here.", "csrf_token": token})
    assert reply.status_code == 303
    done = re.search(r'data-done="([^"]+)"', (await http.get(page)).text)
    assert done and done.group(1)
    live = await page_until(
        http,
        page,
        lambda text: 'data-status="accepted"' in text,
        60,
    )
    assert (
        "taken by the agent"
        in (
            await http.get(
                page, headers={"X-Console-Fragment": "1", "X-Console-Done": done.group(1)}
            )
        ).text
    )
    assert state(live) == "with a person" and "operator <b>ada</b>" in live
    assert 'class="msg msg-operator"' in live and "Ada here." in live

    release = await http.post(f"{page}/release", data={"note": "done", "csrf_token": token})
    assert release.status_code == 303
    await page_until(http, page, lambda text: state(text) == "with the agent", 60)

"""The operator's seat end to end, in two headless Chromium windows: a user on the
gateway's chat page and an operator in the console, with every service running as
``pipeline up`` runs it (each a supervised ``pipeline run`` process) on a real broker.

The user asks a question and the answer appears; asks for a person, and the operator
finds the conversation in the inbox, replies (the user sees it) and releases it; the
agent answers the next message. A tool that needs approval waits until the operator
approves it in the console, and the user gets its result; a denied one is answered as
denied. A ``<script>`` the user wrote shows as text on both pages, and the console
refuses anything without a session. Screenshots of both pages are kept.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from pipeline.dev.kafka import port_in_use
from pipeline.dev.stack.local import LocalStack
from pipeline.dev.stack.supervisor import SERVICES
from pipeline.services.console.passwords import hash_password
from tests.browser_support import chromium, click, screenshot, texts, wait_for

PASSWORD = "grace's long password"
TENANT_TOKEN = "acme-browser-token"
CONVERSATION = "web:acme:ada"
HOSTILE = "Let me talk to a person <script>document.title='owned'</script><b>now</b>"
WAITING = "This needs a person's approval first; I will come back to you here."
HANDED_OVER = "I am passing you to a person; they will answer you here."


def _free_block(size: int) -> int:
    """A base port with ``size`` free ports after it, below Linux's ephemeral range."""
    while True:
        base = random.randrange(20000, 30000, 10)
        if not any(port_in_use(base + i) for i in range(size)):
            return base


@pytest.fixture
def stack(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[LocalStack]:
    base = _free_block(len(SERVICES) + 2)
    env = {
        "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": topic_prefix,
        "PIPELINE_TOPIC_REPLICATION_FACTOR": "1",
        "PIPELINE_COMMIT_INTERVAL_SECONDS": "0.2",
        "PIPELINE_GATEWAY__PORT": str(base + len(SERVICES)),
        "PIPELINE_GATEWAY__WEB_TOKENS": json.dumps({"acme": TENANT_TOKEN}),
        "PIPELINE_GATEWAY__CHAT_TOKEN_SECRET": "operator-seat-chat-secret",
        "PIPELINE_CONSOLE__HOST": "127.0.0.1",
        "PIPELINE_CONSOLE__PORT": str(base + len(SERVICES) + 1),
        "PIPELINE_CONSOLE__OPERATORS": json.dumps(
            {"grace": {"password_hash": hash_password(PASSWORD, time_cost=1, memory_cost=8192)}}
        ),
        "PIPELINE_CONSOLE__SESSION_SECRET": "operator-seat-session-secret",
        "PIPELINE_AGENT__APPROVAL_TOOLS": json.dumps({"*": ["current_time"]}),
    }
    with LocalStack(env, metrics_base_port=base, log_dir=tmp_path) as running:
        yield running


def say(chat: WebDriver, text: str) -> None:
    chat.find_element(By.ID, "text").send_keys(text)
    chat.find_element(By.ID, "send").click()
    wait_for(chat, lambda d: text in texts(d, "#messages li.user"))


def answered(chat: WebDriver, predicate: Callable[[str], bool], after: int) -> str:
    """The first bot message after the first ``after`` ones that ``predicate`` accepts."""
    return wait_for(
        chat,
        lambda d: next((t for t in texts(d, "#messages li.bot")[after:] if predicate(t)), None),
        60,
    )


def bot_count(chat: WebDriver) -> int:
    return len(texts(chat, "#messages li.bot"))


def decide(console: WebDriver, url: str, decision: str) -> None:
    console.get(f"{url}/approvals")
    wait_for(console, lambda d: texts(d, "section.approval"), 60)
    assert "current_time" in texts(console, "section.approval h2")[0]
    click(console, f"section.approval button.{decision}")
    wait_for(console, lambda d: d.find_elements(By.ID, "no-approvals"))


def test_a_user_and_an_operator_share_a_conversation_in_two_browsers(stack: LocalStack) -> None:
    settings = stack.settings()
    gateway = f"http://127.0.0.1:{settings.gateway.port}"
    console_url = f"http://127.0.0.1:{settings.console.port}"

    # The console without a session: a page sends a browser to sign in (an API client
    # gets 401), the stream and a post get 401, a cross-site post 403.
    page = httpx.get(f"{console_url}/inbox", headers={"Accept": "text/html"})
    assert page.is_redirect and page.headers["location"].startswith("/signin")
    assert httpx.get(f"{console_url}/stream").status_code == 401
    assert httpx.post(f"{console_url}/approvals/x/decide").status_code == 401
    forged = httpx.post(
        f"{console_url}/signin",
        data={"operator": "grace", "password": PASSWORD},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert forged.status_code == 403

    issued = httpx.post(
        f"{gateway}/v1/web/chat-tokens",
        json={"user_id": "ada"},
        headers={"Authorization": f"Bearer {TENANT_TOKEN}"},
    )
    assert issued.status_code == 201, issued.text
    assert issued.json()["conversation_id"] == CONVERSATION

    with chromium() as chat, chromium() as console:
        # The user asks; the answer appears.
        chat.get(f"{gateway}/chat#token={issued.json()['token']}")
        wait_for(chat, lambda d: d.find_element(By.ID, "status").text == "connected")
        say(chat, "what is 12*7?")
        assert answered(chat, lambda t: "84" in t, 0) == "12*7 = 84"

        # The user asks for a person; the agent says so and goes quiet.
        seen = bot_count(chat)
        say(chat, HOSTILE)
        assert answered(chat, lambda t: t == HANDED_OVER, seen)

        # The operator signs in and finds the conversation in the inbox.
        console.get(f"{console_url}/inbox")
        wait_for(console, lambda d: "/signin" in d.current_url)
        console.find_element(By.ID, "operator-field").send_keys("grace")
        console.find_element(By.ID, "password-field").send_keys(PASSWORD)
        console.find_element(By.ID, "signin").click()
        wait_for(console, lambda d: d.current_url.endswith("/inbox"))
        row = f'tr[data-conversation="{CONVERSATION}"]'
        wait_for(console, lambda d: texts(d, row), 60)
        screenshot(console, "operator-seat-console-inbox")
        click(console, f"{row} a")
        wait_for(console, lambda d: HOSTILE in texts(d, ".msg-user .text"))
        assert console.find_elements(By.CSS_SELECTOR, "#messages script, #messages b") == []

        # The operator replies; the user sees it. Then the operator releases.
        seen = bot_count(chat)
        console.find_element(By.ID, "reply-text").send_keys("Hello Ada, Grace here.")
        console.find_element(By.ID, "reply").click()
        assert answered(chat, lambda t: t == "Hello Ada, Grace here.", seen)
        wait_for(console, lambda d: texts(d, "#state") == ["with a person"])
        screenshot(console, "operator-seat-console")
        console.find_element(By.ID, "release-note").send_keys("asked about sums")
        console.find_element(By.ID, "release").click()
        wait_for(console, lambda d: texts(d, "#state") == ["with the agent"])

        # The agent answers the next message again.
        seen = bot_count(chat)
        say(chat, "what is 2+3?")
        assert answered(chat, lambda t: "=" in t, seen) == "2+3 = 5"

        # A tool that needs approval waits; approved in the console, its result arrives.
        seen = bot_count(chat)
        say(chat, "what time is it?")
        assert answered(chat, lambda t: t == WAITING, seen)
        decide(console, console_url, "approve")
        assert answered(chat, lambda t: t.startswith("It is "), seen)

        # A denied one is answered as denied.
        seen = bot_count(chat)
        say(chat, "what time is it now?")
        assert answered(chat, lambda t: t == WAITING, seen)
        decide(console, console_url, "deny")
        denial = answered(chat, lambda t: "denied" in t, seen)
        assert denial.startswith("Sorry, the current_time tool failed (denied)")

        screenshot(chat, "operator-seat-chat")
        markup = chat.find_element(By.ID, "messages").get_attribute("innerHTML") or ""
        assert HOSTILE in texts(chat, "#messages li.user")
        assert "<script>" not in markup and "&lt;script&gt;" in markup
        assert chat.title != "owned" and console.title != "owned"

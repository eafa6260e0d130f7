"""The gateway's chat page in the system's headless Chromium, against the real services.

Gateway, agent, tools and delivery run on a real broker; the browser opens the chat
page with a chat token, asks a question and sees the answer arrive on the stream; a
message containing ``<script>`` is shown as text and runs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from pipeline.services import tools
from pipeline.services.agent import build as build_agent
from pipeline.services.delivery import build as build_delivery
from tests.browser_support import chromium, screenshot, wait_for
from tests.integration.gateway_support import serving
from tests.integration.runtime_support import running, settings_for

TOPICS = (
    "message_received",
    "webhook_received",
    "tool_called",
    "tool_result",
    "response_ready",
    "delivery_status",
    "delivery_sent",
    "web_outgoing",
    "timer_requested",
    "timer_fired",
    "context_updated",
    "agent_state_changelog",
    "response_delta",
    "history_summarized",
    "dead_letters",
    "tool_catalog",
    "handoff_requested",
    "operator_message",
    "handoff_released",
    "approval_requested",
    "approval_decided",
)
HOSTILE = "<script>document.title='owned'</script><b>bold?</b>"


def texts(driver: WebDriver, kind: str) -> list[str]:
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, f"#messages li.{kind}")]


def chat(driver: WebDriver, url: str) -> tuple[str, list[str], list[str]]:
    """Open the page, ask, wait for the answer, send the hostile text; what the page shows."""
    driver.get(url)
    wait_for(driver, lambda d: d.find_element(By.ID, "status").text == "connected")
    box = driver.find_element(By.ID, "text")
    box.send_keys("what is 12*7?")
    driver.find_element(By.ID, "send").click()
    answer = wait_for(driver, lambda d: [t for t in texts(d, "bot") if "84" in t], 40)
    box.send_keys(HOSTILE)
    driver.find_element(By.ID, "send").click()
    wait_for(driver, lambda d: HOSTILE in texts(d, "user"))
    # The agent answers the hostile text too; it arrives as text like everything else.
    wait_for(driver, lambda d: len(texts(d, "bot")) >= 2, 40)
    screenshot(driver, "chat-page")
    return driver.title, answer, texts(driver, "bot")


async def test_the_chat_page_asks_and_shows_the_answer_and_shows_markup_as_text(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    make_topics(*TOPICS, partitions=2)
    settings = settings_for(
        kafka_bootstrap,
        topic_prefix,
        gateway={
            "web_tokens": {"acme": "acme-token"},
            "chat_token_secret": "browser-test-chat-secret",
        },
    )
    async with (
        running(build_agent(settings)),
        running(tools.build(settings)),
        running(build_delivery(settings)),
        serving(settings) as gateway,
    ):
        issued = await gateway.post(
            "/v1/web/chat-tokens",
            json={"user_id": "ada"},
            headers={"Authorization": "Bearer acme-token"},
        )
        assert issued.status_code == 201, issued.text
        page = await gateway.get("/chat")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        base = str(gateway.base_url).rstrip("/")
        url = f"{base}/chat#token={issued.json()['token']}"
        with chromium() as driver:
            title, answer, answers = await asyncio.to_thread(chat, driver, url)
            shown = await asyncio.to_thread(lambda: driver.find_element(By.ID, "messages"))
            markup = await asyncio.to_thread(lambda: shown.get_attribute("innerHTML") or "")
    assert answer == ["12*7 = 84"]
    assert title == "Chat", "the <script> in the message did not run"
    assert HOSTILE in answers[1], "the agent's echo of it is text too"
    assert "<script>" not in markup and "&lt;script&gt;" in markup

"""The gateway's chat page in the system's headless Chromium, against the real services.

Gateway, agent, tools and delivery run on a real broker; the browser opens the chat
page with a chat token, asks a question and sees the answer arrive on the stream; a
message containing ``<script>`` is shown as text and runs nothing. With a model that
writes (the deterministic provider, word by word) on a broker of the test's own, the page
shows the words before the answer is complete, the conversation again after a reload,
and, once Kafka is stopped, that it is offline and a message not sent with a retry
button, never a raw error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from pipeline.config import Settings
from pipeline.dev.kafka import DevKafka
from pipeline.services import tools
from pipeline.services.agent import build as build_agent
from pipeline.services.delivery import build as build_delivery
from pipeline.topology import admin_client, apply, load_settings_topology
from tests.browser_support import chromium, screenshot, wait_for
from tests.browser_support import texts as page_texts
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
    "operator_action_handled",
    "approval_requested",
    "approval_decided",
    "tool_outcome_decided",
    "tools_journal",  # the tools service journals its calls
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


QUESTION = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
ANSWER = f"You said: {QUESTION}"


def page_text(driver: WebDriver) -> str:
    text: str = driver.execute_script("return document.body.innerText")
    return text


def writing_then_reload_then_offline(
    driver: WebDriver, url: str, stop_kafka: Callable[[], None]
) -> dict[str, object]:
    """What the page showed: the answer while written, after a reload, without Kafka."""
    seen: dict[str, object] = {}
    driver.get(url)
    wait_for(driver, lambda d: d.find_element(By.ID, "status").text == "connected")
    driver.find_element(By.ID, "text").send_keys(QUESTION)
    driver.find_element(By.ID, "send").click()
    # Words appear while the answer is written: a preview shorter than the answer.
    partial = wait_for(
        driver,
        lambda d: [
            t for t in page_texts(d, "#messages li.bot.writing") if 0 < len(t) < len(ANSWER)
        ],
        40,
    )
    seen["partial"] = partial[0]
    screenshot(driver, "chat-page-writing")
    answered = "#messages li.bot:not(.writing)"
    wait_for(driver, lambda d: page_texts(d, answered) == [ANSWER], 40)
    seen["writing_left"] = page_texts(driver, "#messages li.writing")
    # A reload shows the conversation so far, read back from Kafka.
    driver.refresh()
    wait_for(driver, lambda d: d.find_element(By.ID, "status").text == "connected")
    seen["history"] = wait_for(
        driver,
        lambda d: (
            (page_texts(d, "#messages li.user"), page_texts(d, "#messages li.bot"))
            if page_texts(d, "#messages li.bot")
            else None
        ),
    )
    screenshot(driver, "chat-page-reloaded")
    # Kafka stops: the page says it is offline, and a message not sent can be retried.
    stop_kafka()
    seen["offline"] = wait_for(
        driver, lambda d: d.find_element(By.ID, "status").text == "offline", 60
    )
    driver.find_element(By.ID, "text").send_keys("are you there?")
    driver.find_element(By.ID, "send").click()
    retry = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "button.retry"), 60)
    seen["retry"] = retry[0].text
    seen["note"] = page_texts(driver, "#messages li.failed-note")
    seen["page"] = page_text(driver)
    screenshot(driver, "chat-page-offline")
    return seen


async def test_the_chat_page_shows_answers_as_written_history_and_an_offline_state(
    stoppable_broker: DevKafka, topic_prefix: str
) -> None:
    settings = Settings(
        bootstrap_servers=stoppable_broker.bootstrap_servers,
        topic_prefix=topic_prefix,
        topic_replication_factor=1,
        metrics_port=0,
        commit_interval_seconds=0.2,
        # The services stop after Kafka did: their final commit cannot finish, so the
        # test waits this long for each, not the default half minute.
        drain_timeout_seconds=3.0,
        gateway={
            "web_tokens": {"acme": "acme-token"},
            "chat_token_secret": "browser-test-chat-secret",
            "publish_timeout_seconds": 2.0,
            "stream_status_seconds": 0.5,
        },
        llm={"deterministic_words_per_second": 4.0},
        tools={"catalog_wait_seconds": 0},
    )
    apply(admin_client(settings), load_settings_topology(settings), settings)
    async with (
        running(build_agent(settings)),
        running(build_delivery(settings)),
        serving(settings) as gateway,
    ):
        issued = await gateway.post(
            "/v1/web/chat-tokens",
            json={"user_id": "ada"},
            headers={"Authorization": "Bearer acme-token"},
        )
        assert issued.status_code == 201, issued.text
        url = f"{str(gateway.base_url).rstrip('/')}/chat#token={issued.json()['token']}"
        with chromium() as driver:
            seen = await asyncio.to_thread(
                writing_then_reload_then_offline, driver, url, stoppable_broker.stop
            )
    partial = str(seen["partial"])
    assert ANSWER.startswith(partial.strip()), "the words shown are the answer's first ones"
    assert seen["writing_left"] == [], "the answer replaced its preview"
    assert seen["history"] == ([QUESTION], [ANSWER])
    assert seen["retry"] == "Retry"
    (note,) = seen["note"]  # type: ignore[misc]
    assert "unavailable right now" in note
    page = str(seen["page"])
    assert "Kafka" not in page and "KafkaError" not in page and "_MSG_TIMED_OUT" not in page

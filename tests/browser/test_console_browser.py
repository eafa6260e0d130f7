"""The operator console in a real browser, against the real agent, tools service and
console processes on a real broker: sign in; a user's request for a person appears in
the inbox on its own (server-sent events); the operator replies (confirmed on the page,
which then says by itself that the agent took it) and releases through the page; the
agent answers again; a tool call waiting for approval is approved through the page and
its result reaches the conversation; a ``<script>`` a user wrote is shown as text; the
timeline's ids stay on one line. Screenshots of the inbox, a conversation and its
timeline are kept as test artefacts."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from pipeline.config import bundled_dir
from pipeline.dev.kafka import free_port
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.services.console.passwords import hash_password
from tests.browser_support import chromium, click, screenshot, texts, wait_for

REPO = Path(__file__).resolve().parents[2]
SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
TOPICS = (
    "message_received",
    "response_ready",
    "delivery_status",
    "tool_called",
    "tool_result",
    "timer_requested",
    "timer_fired",
    "context_updated",
    "handoff_requested",
    "operator_message",
    "handoff_released",
    "operator_action_handled",
    "approval_requested",
    "approval_decided",
    "agent_state_changelog",
    "response_delta",
    "history_summarized",
    "tool_catalog",
    "dead_letters",
    "dead_letter_redrives",
    "console_sessions",
    "tools_journal",
)
PASSWORD = "ada's long password"
CONVERSATION = "browser-conv"
HOSTILE = "I want to talk to a human <script>document.title='owned'</script>"


@pytest.fixture
def services(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> Iterator[str]:
    """Agent, tools and console as `pipeline run` processes; the console's base URL."""
    make_topics(*TOPICS, partitions=1)
    console_port = free_port()
    metrics = {name: free_port() for name in ("agent", "tools", "console")}
    env = {
        "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": topic_prefix,
        "PIPELINE_COMMIT_INTERVAL_SECONDS": "0.2",
        "PIPELINE_CONSUMER__SESSION_TIMEOUT_MS": "6000",
        "PIPELINE_CONSUMER__HEARTBEAT_INTERVAL_MS": "500",
        "PIPELINE_AGENT__APPROVAL_TOOLS": json.dumps({"*": ["calculator"]}),
        "PIPELINE_CONSOLE__HOST": "127.0.0.1",
        "PIPELINE_CONSOLE__PORT": str(console_port),
        "PIPELINE_CONSOLE__OPERATORS": json.dumps(
            {"ada": {"password_hash": hash_password(PASSWORD, time_cost=1, memory_cost=8192)}}
        ),
        "PIPELINE_CONSOLE__SESSION_SECRET": "browser-test-secret",
        "PIPELINE_CONSOLE__COOKIE_SECURE": "false",
    }
    processes = {}
    try:
        for name, port in metrics.items():
            with (tmp_path / f"{name}.log").open("ab") as log:
                processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "pipeline", "run", name],
                    env={**os.environ, **env, "PIPELINE_METRICS_PORT": str(port)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                )
        deadline = time.monotonic() + 90
        waiting = dict(metrics)
        while waiting:
            for name, port in list(waiting.items()):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).is_success:
                        del waiting[name]
            if waiting:
                logs = {n: (tmp_path / f"{n}.log").read_text()[-2000:] for n in waiting}
                assert time.monotonic() < deadline, f"not ready: {logs}"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{console_port}"
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(30)


def say(bootstrap: str, topic: str, text: str) -> None:
    """A web user's message to the conversation, as the gateway would produce it."""
    metadata = Metadata.new("message_received", CONVERSATION, tenant_id="t1", producer="test")
    event = Event(
        metadata,
        {
            "channel": "web",
            "sender_id": "user-1",
            "text": text,
            "reply_to": {"channel": "web", "address": "http://127.0.0.1/cb", "thread_id": None},
            "external_id": None,
        },
    )
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    producer.produce(topic, key=CONVERSATION, value=SERDE.encode(event))
    assert producer.flush(30) == 0


def test_an_operator_handles_a_handoff_and_an_approval_in_the_browser(
    services: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    console = services
    # Without a session: pages send the browser to sign in, the stream answers 401.
    assert httpx.get(f"{console}/stream").status_code == 401
    with chromium() as driver:
        driver.get(f"{console}/inbox")
        wait_for(driver, lambda d: "/signin" in d.current_url)
        sign_in(driver, "wrong password")
        # The refused sign-in answers with a new page: wait for it, not for the old one.
        refusal = wait_for(driver, lambda d: d.find_elements(By.ID, "error"))
        assert "Unknown operator or wrong password" in refusal[0].text
        sign_in(driver, PASSWORD)
        wait_for(driver, lambda d: d.current_url.endswith("/inbox"))
        assert wait_for(driver, lambda d: texts(d, "#operator")) == ["ada"]

        # The agent hands the conversation over; the open inbox shows it by itself.
        say(kafka_bootstrap, topic_prefix + "message_received", HOSTILE)
        row = f'tr[data-conversation="{CONVERSATION}"]'
        wait_for(driver, lambda d: texts(d, row))
        assert "waiting for a person" in texts(driver, row)[0]
        screenshot(driver, "console-inbox")

        click(driver, f"{row} a")
        wait_for(driver, lambda d: HOSTILE in texts(d, ".msg-user .text"))
        assert driver.find_elements(By.CSS_SELECTOR, "#messages script") == []
        assert driver.title != "owned"

        driver.find_element(By.ID, "reply-text").send_keys("Hello, Ada here. What happened?")
        driver.find_element(By.ID, "reply").click()
        wait_for(
            driver,
            lambda d: "Hello, Ada here. What happened?" in texts(d, ".msg-operator .text"),
        )
        wait_for(driver, lambda d: texts(d, "#state") == ["with a person"])
        # The page confirms the reply and says, live, that the agent took it.
        taken = '#confirmation[data-status="accepted"]'
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, taken))
        assert "taken by the agent" in texts(driver, "#confirmation")[0]
        screenshot(driver, "console-conversation")
        driver.find_element(By.ID, "release-note").send_keys("the user wants a sum")
        driver.find_element(By.ID, "release").click()
        wait_for(driver, lambda d: texts(d, "#state") == ["with the agent"])

        # Back with the agent: the calculator needs approval; approve it on the page.
        say(kafka_bootstrap, topic_prefix + "message_received", "what is 12*7?")
        driver.get(f"{console}/approvals")
        wait_for(driver, lambda d: texts(d, "section.approval"))
        assert "calculator" in texts(driver, "section.approval h2")[0]
        click(driver, "section.approval button.approve")
        wait_for(driver, lambda d: d.find_elements(By.ID, "no-approvals"))
        driver.get(f"{console}/conversations/{CONVERSATION}")
        wait_for(driver, lambda d: "12*7 = 84" in texts(d, ".msg-agent .text"))

        # The timeline: each id on one line, cut short, whole in its tooltip.
        driver.get(f"{console}/conversations/{CONVERSATION}/timeline")
        ids = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline .id"))
        assert len(ids) > 10
        for found in ids:
            full = found.get_attribute("title") or ""
            assert len(full) == 36 and found.get_attribute("textContent") == full
            height, font = driver.execute_script(
                "const s = getComputedStyle(arguments[0]);"
                "return [arguments[0].getBoundingClientRect().height, parseFloat(s.fontSize)];",
                found,
            )
            assert height < 2 * font, f"{full} wraps: {height}px high at {font}px"
        screenshot(driver, "console-timeline")


def sign_in(driver: WebDriver, password: str) -> None:
    driver.find_element(By.ID, "operator-field").clear()
    driver.find_element(By.ID, "operator-field").send_keys("ada")
    driver.find_element(By.ID, "password-field").send_keys(password)
    driver.find_element(By.ID, "signin").click()

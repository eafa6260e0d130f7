"""Human cleanup on a real broker: the real agent, tools service and console, an operator
taking a conversation, replying, approving a tool call and denying another through the
console's API; the agent's per-tenant, per-version metrics move, and the console's
human-cleanup page shows the same."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx
from prometheus_client import CollectorRegistry

from pipeline.services import tools
from pipeline.services.agent import assemble
from pipeline.services.console import create_app
from pipeline.services.console.view import TOPICS
from tests.integration.gateway_support import serving_app
from tests.integration.runtime_support import (
    message,
    produce_events,
    read_all_async,
    running,
)
from tests.integration.test_console import TOKEN, console_settings, page_until

VERSION = "2024.06-canary"
LABELS = {"service": "agent", "tenant": "t1", "agent_version": VERSION}


async def test_operator_work_moves_the_cleanup_metrics_and_the_console_page(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    make_topics(
        *TOPICS,
        "tool_catalog",
        "tools_journal",
        "dead_letters",
        "dead_letter_redrives",
        "timer_requested",
        "context_updated",
        "agent_state_changelog",
        "response_delta",
        "history_summarized",
        partitions=2,
    )
    base = console_settings(kafka_bootstrap, topic_prefix)
    agent_section = {"version": VERSION, "approval_tools": {"*": ["calculator"]}}
    settings = base.model_copy(update={"agent": base.agent.model_copy(update=agent_section)})
    topic = topic_prefix.__add__
    agent, _ = assemble(settings)

    def cleanup(name: str, **labels: str) -> float:
        value = agent.registry.get_sample_value(f"pipeline_cleanup_{name}", {**LABELS, **labels})
        return value or 0.0

    async def until(condition: Callable[[], bool], what: str) -> None:
        deadline = asyncio.get_running_loop().time() + 60
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, what
            await asyncio.sleep(0.1)

    async with (
        running(agent),
        running(tools.build(settings)),
        serving_app(create_app(settings, registry=CollectorRegistry())) as http,
    ):
        http.headers["Authorization"] = f"Bearer {TOKEN}"
        greeting = message("conv-1", "hello")
        produce_events(kafka_bootstrap, topic("message_received"), [greeting])
        await until(lambda: cleanup("first_answers_total") == 1, "the agent's answer")

        # An operator takes the answered conversation by writing to it: a handoff that
        # reopens the answer, and an operator's reply.
        await page_until(http, "/", lambda text: "conv-1" in text)
        replied = await http.post("/conversations/conv-1/reply", data={"text": "Hi, Bob here."})
        assert replied.status_code == 202, replied.text
        await until(lambda: cleanup("operator_replies_total") == 1, "the operator's reply")
        assert cleanup("handoffs_total", requested_by="operator") == 1
        assert cleanup("first_answers_reopened_total", reason="handoff") == 1

        # A user asks for a person; the operator takes the conversation, then replies.
        produce_events(
            kafka_bootstrap, topic("message_received"), [message("conv-4", "talk to a human")]
        )
        await page_until(http, "/inbox", lambda text: "conv-4" in text)
        for path, data in (("take", {}), ("reply", {"text": "Bob here, how can I help?"})):
            answer = await http.post(f"/conversations/conv-4/{path}", data=data)
            assert answer.status_code == 202, answer.text
        await until(lambda: cleanup("operator_replies_total") == 2, "the second reply")
        assert cleanup("handoffs_total", requested_by="user") == 1

        # Two calculations wait for an approval: one approved, one denied.
        asked = [message("conv-2", "what is 12*7?"), message("conv-3", "what is 2+3?")]
        produce_events(kafka_bootstrap, topic("message_received"), asked)
        approvals = await page_until(
            http, "/approvals", lambda t: t.count('action="/approvals/') >= 2
        )
        ids = dict(re.findall(r"(conv-[23]).*?/approvals/([^/]+)/decide", approvals, re.S))
        for conversation, decision in (("conv-2", "approved"), ("conv-3", "denied")):
            decided = await http.post(
                f"/approvals/{ids[conversation]}/decide", data={"decision": decision}
            )
            assert decided.status_code == 202, decided.text
        await until(
            lambda: cleanup("approvals_total", outcome="denied") == 1, "the denied approval"
        )
        await read_all_async(
            kafka_bootstrap, topic("tool_result"), lambda records: len(records) >= 1, 60
        )
        assert cleanup("approvals_total", outcome="requested") == 2
        assert cleanup("approvals_total", outcome="approved") == 1
        assert cleanup("conversations_total") == 4
        assert cleanup("dead_letters_total") == 0

        # The console's page: the same signals, for the tenant and the agent's version.
        row = f'data-tenant="t1" data-version="{VERSION}"'
        page = await page_until(
            http,
            "/cleanup",
            lambda text: row in text and "2 / 1 / 0 / 1 / 0" in text,
        )
        cells = page[page.index(row) :]
        assert '<td class="handoff-rate">50.0% (2)</td>' in cells
        assert '<td class="replies">0.50 (2)</td>' in cells
        assert "Human cleanup" in (await http.get("/cleanup")).text
    assert isinstance(http, httpx.AsyncClient)

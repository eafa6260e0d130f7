"""Answers as they are written, on a real broker: a stand-in model that streams its words
over HTTP, the agent, delivery and gateway processes, and an SSE client as the browser.

- deltas reach the browser in order while the model writes, and the answer replaces them;
- a gateway stopped mid-answer: the stream resumes on another replica from its
  Last-Event-ID, nothing twice, and the answer arrives;
- the agent SIGKILLed mid-answer in exactly-once mode: after its restart the answer is
  written again from its start, and exactly one answer is delivered, replacing the
  preview.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.dev.model_stand_in import StandInModel
from pipeline.services.agent import build as build_agent
from pipeline.services.delivery import build as build_delivery
from tests.integration.runtime_support import (
    read_all_async,
    running,
    settings_for,
    start_service,
    stop_service,
)
from tests.integration.web_stream_support import (
    Received,
    Replica,
    StreamClient,
    gateway_replicas,
    stream,
    token_for,
)

TOPICS = (
    "message_received",
    "webhook_received",
    "tool_called",
    "tool_result",
    "response_ready",
    "response_delta",
    "history_summarized",
    "delivery_status",
    "delivery_sent",
    "web_outgoing",
    "timer_requested",
    "timer_fired",
    "context_updated",
    "agent_state_changelog",
    "agent_journal",
    "handoff_requested",
    "approval_requested",
    "operator_message",
    "handoff_released",
    "operator_action_handled",
    "approval_decided",
    "tool_outcome_decided",
    "dead_letters",
    "tool_catalog",
)
NO_TOOLS = {"catalog_wait_seconds": 0}


@pytest.fixture
def topics(make_topics: Callable[..., list[str]]) -> None:
    make_topics(*TOPICS, partitions=3)


@pytest.fixture
def model() -> Iterator[StandInModel]:
    with StandInModel(tokens=120, tokens_per_second=40) as stand_in:
        yield stand_in


@pytest.fixture
def replicas(
    kafka_bootstrap: str, topic_prefix: str, topics: None, tmp_path: Path
) -> Iterator[list[Replica]]:
    with gateway_replicas(2, kafka_bootstrap, topic_prefix, tmp_path) as started:
        yield started


def llm(model: StandInModel) -> dict[str, Any]:
    return {
        "provider": "openai",
        "base_url": model.base_url,
        "model": "stand-in",
        "api_key": "k",
        "allowed_networks": ["127.0.0.0/8"],  # the stand-in runs on this machine
    }


async def ask(client: httpx.AsyncClient, token: str, text: str) -> None:
    sent = await client.post(
        "/v1/web/chat/messages",
        json={"text": text, "message_id": f"m-{text}"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert sent.status_code == 202, sent.text


async def until_answer(client: StreamClient, seconds: float = 60.0) -> Received:
    """The stream's events up to the next message (the answer)."""
    deadline = time.monotonic() + seconds
    while True:
        got = await client.next(max(0.1, deadline - time.monotonic()))
        if got.event == "message":
            return got


def deltas(got: list[Received]) -> list[Received]:
    return [g for g in got if g.event == "delta"]


async def test_deltas_arrive_in_order_and_the_answer_replaces_them(
    kafka_bootstrap: str, topic_prefix: str, replicas: list[Replica], model: StandInModel
) -> None:
    settings = settings_for(kafka_bootstrap, topic_prefix, llm=llm(model), tools=NO_TOOLS)
    gateway = replicas[0]
    async with (
        gateway.client() as http,
        running(build_agent(settings)),
        running(build_delivery(settings)),
    ):
        ada = await token_for(http, "t1", "ada")
        async with stream(http, {"token": ada["token"]}) as browser:
            asked = time.monotonic()
            await ask(http, ada["token"], "tell me a story")
            first = await browser.next(30)
            first_at = time.monotonic()
            answer = await until_answer(browser)
            answered_at = time.monotonic()
    written = deltas(browser.got)
    assert first.event == "delta" and first is written[0]
    assert [d.data["sequence"] for d in written] == list(range(len(written)))
    stream_id = first.data["stream_id"]
    assert {d.data["stream_id"] for d in written} == {stream_id}
    assert answer.data["stream_id"] == stream_id
    text = "".join(d.data["text"] for d in written)
    assert text == answer.data["text"]
    assert text == " ".join(model.words("tell me a story"))
    # The words were on the page long before the answer was complete: the model writes
    # 120 words at 40 a second, about 3 s.
    assert answered_at - first_at > 2.0, (first_at - asked, answered_at - asked)
    # Batched: tens of deltas for 120 words, not one per word.
    assert 10 <= len(written) <= 60
    assert not any(d.data["interrupted"] for d in written)
    ids = [g.id for g in browser.got]
    assert len(set(ids)) == len(ids), "every event has its own id"


async def test_a_stream_cut_mid_answer_resumes_from_its_last_event_id_without_repeats(
    kafka_bootstrap: str,
    topic_prefix: str,
    replicas: list[Replica],
    model: StandInModel,
) -> None:
    settings = settings_for(kafka_bootstrap, topic_prefix, llm=llm(model), tools=NO_TOOLS)
    first, second = replicas
    async with (
        first.client() as a,
        second.client() as b,
        running(build_agent(settings)),
        running(build_delivery(settings)),
    ):
        ada = await token_for(a, "t1", "ada")
        async with stream(a, {"token": ada["token"]}) as before:
            await ask(a, ada["token"], "once upon a time")
            while len(deltas(before.got)) < 5:
                await before.next(30)
            # The gateway goes away mid-answer; the stream is cut.
            assert stop_service(first.process) == 0
            with pytest.raises((AssertionError, httpx.HTTPError, TimeoutError)):
                while True:
                    await before.next(10)
        last = before.got[-1].id
        await asyncio.sleep(0.5)  # the model writes on meanwhile
        async with stream(b, {"token": ada["token"]}, {"Last-Event-ID": last}) as after:
            answer = await until_answer(after)
            with pytest.raises(TimeoutError):
                await after.next(2.0)  # nothing after the answer
    got_before, got_after = deltas(before.got), deltas(after.got)
    assert got_after, "deltas written while disconnected were caught up"
    sequences = [d.data["sequence"] for d in got_before + got_after]
    assert sequences == list(range(len(sequences))), "in order, none twice, none missing"
    text = "".join(d.data["text"] for d in got_before + got_after)
    assert text == answer.data["text"] == " ".join(model.words("once upon a time"))
    ids = [g.id for g in before.got + after.got]
    assert len(set(ids)) == len(ids)


async def test_an_agent_killed_mid_answer_delivers_one_answer_that_replaces_the_preview(
    kafka_bootstrap: str,
    topic_prefix: str,
    replicas: list[Replica],
    model: StandInModel,
    tmp_path: Path,
) -> None:
    eos = {"processing_guarantee": "exactly_once"}
    settings = settings_for(kafka_bootstrap, topic_prefix, **eos)
    agent_env = {
        "PIPELINE_PROCESSING_GUARANTEE": "exactly_once",
        "PIPELINE_LLM__PROVIDER": "openai",
        "PIPELINE_LLM__BASE_URL": model.base_url,
        "PIPELINE_LLM__MODEL": "stand-in",
        "PIPELINE_LLM__API_KEY": "k",
        "PIPELINE_LLM__ALLOWED_NETWORKS": '["127.0.0.0/8"]',  # the stand-in is local
        "PIPELINE_TOOLS__CATALOG_WAIT_SECONDS": "0",
        # The restarted agent takes the partitions over at once (static membership).
        "PIPELINE_CONSUMER__GROUP_INSTANCE_ID": "agent-0",
    }
    log = tmp_path / "agent.log"

    def agent() -> Any:
        return start_service(
            "agent", bootstrap=kafka_bootstrap, prefix=topic_prefix, log=log, env=agent_env
        )

    gateway = replicas[0]
    process = agent()
    try:
        async with gateway.client() as http, running(build_delivery(settings)):
            ada = await token_for(http, "t1", "ada")
            async with stream(http, {"token": ada["token"]}) as browser:
                await ask(http, ada["token"], "a long answer please")
                while len(deltas(browser.got)) < 4:
                    await browser.next(60)
                assert stop_service(process, signal.SIGKILL, 30) == -signal.SIGKILL
                process = agent()
                answer = await until_answer(browser, 90)
                with pytest.raises(TimeoutError):
                    await browser.next(3.0)  # one answer, nothing after it
            outgoing = await read_all_async(
                kafka_bootstrap, topic_prefix + "web_outgoing", lambda r: len(r) >= 1, 30
            )
            statuses = await read_all_async(
                kafka_bootstrap,
                topic_prefix + "delivery_status",
                lambda r: any(x.event()["state"] == "sent" for x in r),
                30,
            )
    finally:
        if process.poll() is None:
            stop_service(process)
    written = deltas(browser.got)
    stream_id = written[0].data["stream_id"]
    assert answer.data["stream_id"] == stream_id, "the answer replaces the preview"
    restarts = [i for i, d in enumerate(written) if d.data["sequence"] == 0]
    assert len(restarts) == 2, "the answer was written again from its start after the kill"
    again = written[restarts[1] :]
    assert "".join(d.data["text"] for d in again) == answer.data["text"]
    assert answer.data["text"] == " ".join(model.words("a long answer please"))
    assert model.requests == 2, "the model was asked again: its answer was never recorded"
    assert len(outgoing) == 1, "exactly one answer written for the browsers"
    assert [s.event()["state"] for s in statuses] == ["sent"]
    assert len([g for g in browser.got if g.event == "message"]) == 1

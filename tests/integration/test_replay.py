"""``pipeline replay`` on conversations the real agent and tools recorded on a real broker:
the same agent shows no difference, a changed one its changed replies, and the replay
produces nothing to the live topics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner, Result
from confluent_kafka import Consumer, TopicPartition

from pipeline.cli import main
from pipeline.services import tools
from pipeline.services.agent import build
from tests.integration.runtime_support import (
    Causes,
    message,
    read_all_async,
    running,
    settings_for,
)
from tests.integration.test_agent_pipeline import TOPICS, produce_in_order

TESTS = Path(__file__).resolve().parents[1]
SHOUTING = ["--service", "replay_agents:shouting", "--app-dir", str(TESTS)]


def high_watermarks(bootstrap: str, prefix: str) -> dict[tuple[str, int], int]:
    """Every partition of the test's topics with its end offset."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        topics = consumer.list_topics(timeout=10).topics
        return {
            (name, p): consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
            for name, meta in topics.items()
            if name.startswith(prefix)
            for p in meta.partitions
        }
    finally:
        consumer.close()


async def replay(bootstrap: str, prefix: str, *args: str) -> Result:
    """``pipeline replay ARGS`` on a thread (it runs an event loop of its own)."""
    env = {"PIPELINE_BOOTSTRAP_SERVERS": bootstrap, "PIPELINE_TOPIC_PREFIX": prefix}
    return await asyncio.to_thread(CliRunner().invoke, main, ["replay", *args], env=env)


async def test_replay_shows_no_difference_then_the_changed_replies(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    make_topics(*TOPICS, partitions=2)
    settings = settings_for(kafka_bootstrap, topic_prefix)
    replies, inbox = topic_prefix + "response_ready", topic_prefix + "message_received"
    async with running(build(settings)), running(tools.build(settings)):
        first = [message("conv-a", "hello"), message("conv-b", "hi")]
        produce_in_order(kafka_bootstrap, inbox, first)
        await read_all_async(kafka_bootstrap, replies, Causes({str(e.id) for e in first}), 60)
        # Each made once the turn before is over: a --from moment between turns.
        produce_in_order(kafka_bootstrap, inbox, [message("conv-a", "what is 12*7?")])
        await read_all_async(kafka_bootstrap, replies, lambda r: len(r) >= 3, 60)
        last = message("conv-a", "what did I say?")
        produce_in_order(kafka_bootstrap, inbox, [last])
        answers = await read_all_async(kafka_bootstrap, replies, lambda r: len(r) >= 4, 60)
    assert 'You said: "what is 12*7?"' in {r.event()["text"] for r in answers}
    before = high_watermarks(kafka_bootstrap, topic_prefix)

    same = await replay(kafka_bootstrap, topic_prefix, "conv-a")
    assert same.exit_code == 0, same.output
    assert "4 input(s) replayed, 4 output(s) recorded, 4 replayed: no difference" in same.output

    changed = await replay(kafka_bootstrap, topic_prefix, "conv-a", *SHOUTING)
    assert changed.exit_code == 1, changed.output
    assert "2 input(s) changed" in changed.output  # the calculator's answer has no letters
    assert '-  text: "Hello! How can I help you today?"' in changed.output
    assert '+  text: "HELLO! HOW CAN I HELP YOU TODAY?"' in changed.output
    assert "response_ready.text" in changed.output

    # The last turn alone, on the state the changelog held before it: the history it
    # quotes is there although its turns are not replayed.
    since = last.metadata.occurred_at.isoformat()
    later = await replay(kafka_bootstrap, topic_prefix, "conv-a", "--from", since)
    assert later.exit_code == 0, later.output
    assert "1 input(s) replayed, 1 output(s) recorded, 1 replayed: no difference" in later.output

    sample = await replay(kafka_bootstrap, topic_prefix, "--sample", "2", *SHOUTING)
    assert sample.exit_code == 1, sample.output
    assert "2 conversation(s) replayed: 2 changed, 0 unchanged" in sample.output
    assert "     3  response_ready.text" in sample.output
    unchanged = await replay(kafka_bootstrap, topic_prefix, "--sample", "2")
    assert unchanged.exit_code == 0, unchanged.output
    assert "2 conversation(s) replayed: 0 changed, 2 unchanged" in unchanged.output

    # Nothing reached Kafka: every live topic (response_ready, the changelog, ...) ends
    # where it ended before the replays, so no delivery service could have sent anything.
    assert high_watermarks(kafka_bootstrap, topic_prefix) == before


async def test_replay_of_an_unknown_conversation_is_a_usage_error(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    make_topics(*TOPICS, partitions=1)
    result = await replay(kafka_bootstrap, topic_prefix, "nobody")
    assert result.exit_code == 2, result.output
    assert "no recorded events for conversation 'nobody'" in result.output
    refused = await replay(kafka_bootstrap, topic_prefix, "nobody", "--service", "delivery")
    assert refused.exit_code == 2
    assert "delivery cannot be replayed: it sends to the channels' APIs" in refused.output


async def test_replay_against_an_unreachable_broker_is_one_line_and_exit_2() -> None:
    result = await replay("127.0.0.1:1", "t-none.", "conv-a")
    assert result.exit_code == 2, result.output
    [line] = result.output.splitlines()  # librdkafka's own log goes to the process's stderr
    # The one line every command gives for an unreachable cluster, naming the servers.
    assert line.startswith("error: Kafka at 127.0.0.1:1 is unreachable"), line
    assert "PIPELINE_BOOTSTRAP_SERVERS" in line

"""Exactly-once mode on a real broker: the agent chain across a SIGKILL of the agent in
the middle of a transaction has no duplicate event and no duplicate state write (read
with read_committed); a fenced zombie cannot commit, whether fenced by its successor's
transactional id or by a newer group generation (KIP-447)."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from pipeline.errors import TransactionFencedError
from pipeline.runtime.kafka_transport import KafkaTransport
from pipeline.runtime.transaction import AbortableTransactionError, Transaction, TransactionGate
from tests.integration.runtime_support import (
    SHORT_SESSION,
    message,
    produce_events,
    read_all,
    running,
    settings_for,
    start_service,
    stop_service,
)
from tests.integration.service_apps import relay

AGENT_TOPICS = (
    "message_received",
    "tool_called",
    "tool_result",
    "response_ready",
    "timer_requested",
    "timer_fired",
    "context_updated",
    "agent_state_changelog",
    "response_delta",
    "history_summarized",
    "dead_letters",
    "tool_catalog",
    "tools_journal",
)
EOS_ENV = {"PIPELINE_PROCESSING_GUARANTEE": "exactly_once", **SHORT_SESSION}


def read_uncommitted(bootstrap: str, topic: str) -> int:
    """How many records the topic holds, aborted and open ones included."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "raw-reader",
            "isolation.level": "read_uncommitted",
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        count, ended, deadline = 0, set(), time.monotonic() + 30
        while len(ended) < len(partitions) and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                err = msg.error()
                if err is None:
                    count += 1
                elif err.code() == KafkaError._PARTITION_EOF:
                    ended.add(msg.partition())
        return count
    finally:
        consumer.close()


def test_agent_chain_across_a_sigkill_has_no_duplicate_event_or_state_write(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]], tmp_path: Path
) -> None:
    make_topics(*AGENT_TOPICS, partitions=3)
    topic = {name: topic_prefix + name for name in AGENT_TOPICS}
    conversations = 60
    # Every conversation: a question for the calculator (a tool round trip), then a chat.
    questions = [message(f"conv-{i}", f"what is {i}*7?") for i in range(conversations)]
    chats = [message(f"conv-{i}", "thanks") for i in range(conversations)]
    inputs = questions + chats
    log = tmp_path / "services.log"
    env = {**EOS_ENV, "PIPELINE_COMMIT_INTERVAL_SECONDS": "0.5"}
    start = dict(bootstrap=kafka_bootstrap, prefix=topic_prefix, log=log)
    tools = start_service("tools", **start, env={**env, "PIPELINE_INSTANCE_ID": "tools-1"})
    # Commits every 2 s while inputs trickle in: a kill lands inside an open transaction.
    agent_env = {**env, "PIPELINE_INSTANCE_ID": "agent-1", "PIPELINE_COMMIT_INTERVAL_SECONDS": "2"}
    agent = start_service("agent", **start, env=agent_env)
    feeder = threading.Thread(
        target=lambda: [
            (produce_events(kafka_bootstrap, topic["message_received"], [e]), time.sleep(0.05))
            for e in inputs
        ]
    )
    feeder.start()
    try:
        deadline = time.monotonic() + 120
        while True:  # until some answers are committed and more sit in an open transaction
            assert time.monotonic() < deadline, "no open transaction with answers seen"
            seen = read_uncommitted(kafka_bootstrap, topic["response_ready"])
            done = read_all(kafka_bootstrap, topic["response_ready"], lambda r: False, 0.5)
            if len(done) >= 5 and seen > len(done):
                break
        stop_service(agent, signal.SIGKILL, timeout=10)
        feeder.join()
        assert agent.returncode == -signal.SIGKILL
        partial = read_all(kafka_bootstrap, topic["response_ready"], lambda r: False, 2)
        assert len(partial) < len(inputs), "the kill came too late to test anything"
        # The same instance id: the restart fences the killed one and aborts its transaction.
        agent = start_service("agent", **start, env=agent_env)
        wanted = {str(e.id) for e in inputs}
        responses = read_all(
            kafka_bootstrap,
            topic["response_ready"],
            lambda r: (
                wanted <= {str(x.event().metadata.correlation_id) for x in r}
                or len(r) > 3 * len(inputs)
            ),
            180,
        )
    finally:
        stop_service(agent)
        stop_service(tools)
    history = log.read_text()[-4000:]
    tool_called = read_all(kafka_bootstrap, topic["tool_called"], lambda r: False, 3)
    tool_results = read_all(kafka_bootstrap, topic["tool_result"], lambda r: False, 3)
    changelog = read_all(kafka_bootstrap, topic["agent_state_changelog"], lambda r: False, 3)

    # No duplicate event anywhere in the chain, and every input answered once.
    for name, records in (("response_ready", responses), ("tool_called", tool_called)):
        ids = Counter(str(r.event().id) for r in records)
        assert not [i for i, n in ids.items() if n > 1], f"duplicate {name} events\n{history}"
    turns = Counter(str(r.event().metadata.correlation_id) for r in responses)
    assert set(turns) == wanted, f"{len(wanted - set(turns))} inputs unanswered\n{history}"
    assert set(turns.values()) == {1}  # one answer per input
    assert len(tool_called) == conversations  # one tool call per question, never two
    assert {json.loads(r.event()["arguments_json"])["expression"] for r in tool_called} == {
        f"{i}*7" for i in range(conversations)
    }
    # No duplicate state write: one changelog record per event the agent handled.
    handled = Counter(e.conversation_id for e in inputs)
    handled.update(r.event().conversation_id for r in tool_results)
    writes = Counter(r.key for r in changelog)
    assert writes == handled, f"state writes {writes - handled} beyond one per input\n{history}"
    # The kill hit an open transaction: the log holds records no read_committed reader sees.
    raw = sum(
        read_uncommitted(kafka_bootstrap, topic[n])
        for n in ("response_ready", "tool_called", "agent_state_changelog")
    )
    committed = len(responses) + len(tool_called) + len(changelog)
    print(
        f"\nSIGKILL after {len(partial)} of {len(inputs)} responses; after restart "
        f"{len(responses)} responses, {len(tool_called)} tool calls, {len(changelog)} state "
        f"writes, 0 duplicates; {raw - committed} records of aborted transactions in the logs"
    )
    assert raw > committed, "the kill did not interrupt an open transaction"


async def test_a_zombie_fenced_by_its_successor_cannot_commit(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    inputs, outputs, _ = make_topics(
        "message_received", "response_ready", "dead_letters", partitions=2
    )
    settings = settings_for(
        kafka_bootstrap,
        topic_prefix,
        processing_guarantee="exactly_once",
        instance_id="zombie",
        commit_interval_seconds=3600.0,  # nothing commits until the fence
    )
    events = produce_events(kafka_bootstrap, inputs, (message(f"c{i}", "hi") for i in range(20)))
    service = relay(settings)
    with pytest.raises(TransactionFencedError, match="fenced"):
        async with running(service):
            deadline = time.monotonic() + 60
            while await asyncio.to_thread(read_uncommitted, kafka_bootstrap, outputs) < 20:
                assert time.monotonic() < deadline, "the relay produced nothing"
            # Its successor registers the same transactional id: the open transaction is
            # aborted and the old producer fenced. Stopping makes the zombie try to commit.
            successor = Producer(
                {
                    "bootstrap.servers": kafka_bootstrap,
                    "transactional.id": f"{topic_prefix}relay-zombie",
                }
            )
            await asyncio.to_thread(successor.init_transactions, 30)
    committed = read_all(kafka_bootstrap, outputs, lambda r: False, 3)
    assert committed == []  # none of the zombie's outputs is readable
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{topic_prefix}relay"})
    try:
        positions = consumer.committed([TopicPartition(inputs, p) for p in range(2)], timeout=10)
    finally:
        consumer.close()
    assert all(tp.offset < 0 for tp in positions), positions  # and no offset committed
    assert len(events) == 20


def test_a_member_of_an_older_group_generation_cannot_commit_offsets(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    inputs, outputs = make_topics("message_received", "response_ready", partitions=2)
    produce_events(kafka_bootstrap, inputs, (message(f"c{i}", "hi") for i in range(4)))
    group = f"{topic_prefix}generations"
    transport = KafkaTransport()

    def member() -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": group,
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([inputs])
        return consumer

    first = member()
    deadline = time.monotonic() + 60
    while not first.assignment():
        assert time.monotonic() < deadline, "no assignment"
        first.poll(0.2)
    stale = first.consumer_group_metadata()
    second = member()  # a rebalance: the group moves to a new generation
    while not second.assignment():
        assert time.monotonic() < deadline, "no rebalance"
        first.poll(0.1)
        second.poll(0.1)
    loop = asyncio.new_event_loop()
    try:
        producer = transport.transactional_producer(
            {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{group}-old"}, loop
        )
        failures: list[BaseException] = []
        transaction = Transaction(
            producer, TransactionGate(), transactional_id=f"{group}-old", fail=failures.append
        )
        transaction.start()
        producer.produce_nowait(outputs, b"from the old generation", b"c0", (), lambda *_: None)
        with pytest.raises(AbortableTransactionError, match="send_offsets_to_transaction"):
            transaction.commit([TopicPartition(inputs, 0, 2)], stale)
        transaction.abort()
        loop.run_until_complete(producer.aclose(5))
    finally:
        loop.close()
        first.close()
        second.close()
    assert read_all(kafka_bootstrap, outputs, lambda r: False, 3) == []
    checker = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        [position] = checker.committed([TopicPartition(inputs, 0)], timeout=10)
    finally:
        checker.close()
    assert position.offset < 0  # the old generation's offsets were refused

"""Exactly-once under the faults a broker failure brings, reproduced at the ports in
memory: committed offsets that cannot be read, a dead letter racing its own commit, a
transaction call that never returns, transaction markers at the end of a partition."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import TopicPartition

from pipeline.errors import KafkaCallStuckError, RejectEvent
from pipeline.events.model import Event, Metadata
from pipeline.runtime.context import Context
from pipeline.runtime.memory_transport import MemoryTransaction
from pipeline.runtime.offset_tracker import decode_finished, encode_finished
from pipeline.runtime.service import Service
from pipeline.testing import MemoryBroker, TestService
from tests.unit.runtime_events import chat, reply, same_partition

EOS = {"processing_guarantee": "exactly_once", "commit_interval_seconds": 3600.0}
POISON = "poison"


def passthrough(handled: list[str]) -> Service:
    """Echoes each message; rejects (dead-letters) the text ``poison``."""
    service = Service("faults", emits=["response_ready"])

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        handled.append(event["text"])
        if event["text"] == POISON:
            raise RejectEvent("a poison record")
        ctx.emit("response_ready", reply(event["text"]))

    return service


def topic_and_group(svc: TestService) -> tuple[str, str]:
    return svc.settings.topic("message_received"), svc.runner.group_id


def texts(svc: TestService) -> list[str]:
    return [e["text"] for e in svc.outputs("response_ready")]


async def test_a_dead_letter_commits_in_the_same_transaction_as_its_offset() -> None:
    """The commit takes its positions straight after the producer's flush: the dead
    letter's record must be finished by then, or the dead letter commits without its
    offset and the next owner dead-letters it again."""
    broker, handled = MemoryBroker(lambda _t: 1), []
    async with TestService(passthrough(handled), broker=broker, **EOS) as svc:
        broker.hold_acknowledgements()
        await svc.send("message_received", chat(POISON))
        dead_topic = svc.settings.topic(svc.settings.dead_letter_topic)
        await svc.until(lambda: len(broker.records(dead_topic)) == 1, "the dead letter")
        await svc.commit()  # the flush acknowledges it; the positions are taken at once
        broker.release_acknowledgements()  # hold no more
        assert svc.committed()[("message_received", 0)].offset == 1
        assert len(svc.dead_letters()) == 1
    async with TestService(passthrough(handled), broker=broker, **EOS) as again:
        await again.send("message_received", chat("after"))
        await again.settle()
        await again.commit()
        assert len(again.dead_letters()) == 1  # not dead-lettered a second time
        assert texts(again) == ["after"]
    assert handled == [POISON, "after"]


async def test_partitions_whose_committed_offsets_cannot_be_read_are_held_until_they_can() -> None:
    """An earlier owner committed offset 1 with 2 finished above it (the metadata). While
    the committed offsets cannot be read, nothing is handled; once they can, 1 and 3 are
    handled and 2 is skipped, never handled a second time."""
    broker, handled = MemoryBroker(lambda _t: 1), []
    service = passthrough(handled)
    probe = TestService(service, broker=broker, **EOS)  # for the names and the encoder
    topic, group = topic_and_group(probe)
    for n in range(4):
        event = Event(
            Metadata.new("message_received", "c1", tenant_id="t1", producer="test"), chat(str(n))
        )
        broker.append(topic, "c1", probe.runner.serde.encode(event))
    broker.commit(group, [TopicPartition(topic, 0, 1, encode_finished(1, {2}))])
    broker.fail_committed_reads(2)
    async with TestService(service, broker=broker, **EOS) as svc:
        held = svc.registry.get_sample_value("pipeline_partitions_held", {"service": "faults"})
        assert held == 1
        assert handled == []
        await svc.until(lambda: broker.committed_read_failures == 0, "the reads to fail", 5.0)
        assert handled == []  # nothing while they could not be read
        await svc.until(lambda: handled == ["1", "3"], "offsets 1 and 3", 10.0)
        await svc.settle()
        await svc.commit()
        assert svc.committed()[("message_received", 0)].offset == 4
        assert svc.registry.get_sample_value("pipeline_partitions_held", {"service": "faults"}) == 0
    assert handled == ["1", "3"]


async def test_a_transaction_call_that_never_returns_stops_the_instance_within_its_deadline() -> (
    None
):
    broker, handled = MemoryBroker(lambda _t: 1), []
    settings = {**EOS, "kafka_call_timeout_seconds": 0.4}
    broker.stall("send_offsets_to_transaction")
    started = time.monotonic()
    with pytest.raises(KafkaCallStuckError, match="send_offsets_to_transaction did not return"):
        async with TestService(passthrough(handled), broker=broker, **settings) as svc:
            await svc.send("message_received", chat("once"))
            await svc.settle()
            await svc.commit()
    assert time.monotonic() - started < 5.0
    assert broker.stalled.is_set()  # the call is still blocked, left behind
    broker.release_stalled()
    # A fresh instance fences the stuck one and handles the event again: committed once.
    async with TestService(passthrough(handled), broker=broker, **EOS) as svc:
        await svc.settle()
        await svc.commit()
        assert texts(svc) == ["once"]
    assert handled == ["once", "once"]


async def test_stopping_is_honoured_within_the_drain_deadline_while_a_commit_never_returns() -> (
    None
):
    broker, handled = MemoryBroker(lambda _t: 1), []
    settings = {
        **EOS,
        "kafka_call_timeout_seconds": 60.0,
        "drain_timeout_seconds": 2.0,
        "commit_interval_seconds": 0.05,
    }
    broker.stall("commit_transaction")
    svc = TestService(passthrough(handled), broker=broker, **settings)
    async with svc:
        await svc.send("message_received", chat("stuck"))
        await svc.until(broker.stalled.is_set, "the commit to block", 5.0)
        stopping = time.monotonic()
    took = time.monotonic() - stopping
    broker.release_stalled()
    assert took < 2.0 + 1.5, f"stopping took {took:.1f}s"
    async with TestService(passthrough(handled), broker=broker, **EOS) as again:
        await again.settle()
        await again.commit()
        assert texts(again) == ["stuck"]


async def test_healthz_fails_while_a_kafka_call_does_not_return() -> None:
    broker, handled = MemoryBroker(lambda _t: 1), []
    free_port = unused_port()
    settings = {
        **EOS,
        "kafka_call_timeout_seconds": 60.0,
        "liveness_stuck_seconds": 1.0,
        "drain_timeout_seconds": 1.0,
        "metrics_port": free_port,
    }
    url = f"http://127.0.0.1:{free_port}/healthz"

    async def probe_until(status: int) -> str:
        deadline = time.monotonic() + 10
        while True:
            answer, reason = await asyncio.to_thread(status_of, url)
            if answer == status or time.monotonic() > deadline:
                assert answer == status, reason
                return reason
            await asyncio.sleep(0.05)

    async with TestService(passthrough(handled), broker=broker, **settings) as svc:
        assert await probe_until(200) == "event loop running"
        broker.stall("commit_transaction")
        await svc.send("message_received", chat("x"))
        await svc.settle()
        committing = asyncio.ensure_future(svc.commit())
        await svc.until(broker.stalled.is_set, "the commit to block")
        stalled = time.monotonic()
        reason = await probe_until(503)
        assert time.monotonic() - stalled >= 1.0  # not before the threshold
        assert reason.startswith("a Kafka call on faults-") and "has not returned" in reason
        blocked = svc.registry.get_sample_value(
            "pipeline_kafka_call_blocked_seconds", {"service": "faults", "thread": "transactions"}
        )
        assert blocked is not None and blocked >= 1.0
        broker.release_stalled()
        await committing
        assert await probe_until(200) == "event loop running"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_of(url: str) -> tuple[int, str]:
    """The probe's status and reason."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())["reason"]
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["reason"]


async def test_an_idle_partition_written_in_transactions_commits_past_its_last_marker() -> None:
    """Its last record is followed by a transaction marker: the committed offset must be
    past the marker (lag 0), as Kafka's own group tool computes lag."""
    broker, handled = MemoryBroker(lambda _t: 1), []
    service = passthrough(handled)
    probe = TestService(service, broker=broker, **EOS)
    topic, _ = topic_and_group(probe)
    for n in range(2):
        txn = MemoryTransaction()
        for m in range(2):
            event = Event(
                Metadata.new("message_received", "c1", tenant_id="t1", producer="up"),
                chat(f"{n}.{m}"),
            )
            broker.append(topic, "c1", probe.runner.serde.encode(event), transaction=txn)
        broker.end_transaction(txn, commit=True)
    end = len(broker.partitions(topic)[0])
    assert end == 6  # two records and a marker, twice
    async with TestService(service, broker=broker, **EOS) as svc:
        await svc.settle()
        await svc.fetches(2)  # an empty fetch reads the consumer's position
        await svc.commit()
        assert svc.committed()[("message_received", 0)].offset == end
    assert handled == ["0.0", "0.1", "1.0", "1.1"]


async def test_a_commit_before_an_earlier_owners_finished_offsets_arrive_keeps_them() -> None:
    """Offsets the earlier owner finished (in the metadata) and that were not fetched yet
    stay in the metadata of a commit made before they arrive."""
    broker, handled = MemoryBroker(lambda _t: 1), []
    slow, fast = same_partition(2, partitions=1)
    release = asyncio.Event()
    service = Service("faults", emits=["response_ready"])

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        if event.conversation_id == slow:
            await release.wait()
        handled.append(event["text"])
        ctx.emit("response_ready", reply(event["text"]))

    probe = TestService(service, broker=broker)
    topic, group = topic_and_group(probe)
    for n, key in enumerate([slow, fast, fast]):
        event = Event(
            Metadata.new("message_received", key, tenant_id="t1", producer="test"), chat(str(n))
        )
        broker.append(topic, key, probe.runner.serde.encode(event))
    broker.commit(group, [TopicPartition(topic, 0, 0, encode_finished(0, {2, 5}))])
    async with TestService(service, broker=broker, drain_timeout_seconds=0.05) as svc:
        await svc.until(lambda: handled == ["1"], "offset 1")
        await svc.commit()
        kept = svc.committed()[("message_received", 0)]
        assert kept.offset == 0
        assert decode_finished(kept.offset, kept.metadata) == {1, 2, 5}
        release.set()

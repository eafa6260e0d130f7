"""Exactly-once mode through pipeline.testing: outputs, state writes, dead letters and
offsets become visible together when the transaction commits; an aborted transaction
leaves nothing visible and its records are handled again; a fenced instance stops."""

from __future__ import annotations

import asyncio
import socket

import pytest
from confluent_kafka import KafkaError

from pipeline.config import Settings
from pipeline.errors import RejectEvent, TransactionFencedError
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from pipeline.runtime.transaction import transactional_id
from pipeline.services.echo import build
from pipeline.state import ChangelogStore
from pipeline.state.changelog import Restored
from pipeline.state.store import decode_value
from pipeline.testing import MemoryBroker, MemoryTransactionalProducer, TestService
from tests.unit.runtime_events import chat

EOS = {"processing_guarantee": "exactly_once", "commit_interval_seconds": 3600.0}
ABORTABLE = KafkaError(KafkaError._TIMED_OUT, "injected", txn_requires_abort=True)


async def test_outputs_and_offsets_are_visible_only_once_the_transaction_commits() -> None:
    async with TestService(build(), **EOS) as svc:
        await svc.send("message_received", chat("hi"), conversation_id="c1")
        await svc.settle()
        topic = svc.settings.topic("response_ready")
        assert len(svc.broker.records(topic)) == 1  # written, in the open transaction
        assert svc.outputs() == []  # but not readable (read_committed)
        assert svc.committed() == {}
        await svc.commit()
        [reply] = svc.outputs("response_ready")
        assert reply["text"] == "echo: hi"
        assert [tp.offset for tp in svc.committed().values()] == [1]


async def test_a_commit_with_nothing_new_keeps_the_transaction_open() -> None:
    async with TestService(build(), **EOS) as svc:
        await svc.send("message_received", chat("hi"))
        await svc.settle()
        await svc.commit()
        await svc.commit()
        assert svc.broker.transactions == {"committed": 1, "aborted": 0}


async def test_an_aborted_transaction_leaves_nothing_and_its_records_are_handled_again() -> None:
    async with TestService(build(), **EOS) as svc:
        for n in range(3):
            await svc.send("message_received", chat(f"m{n}"), conversation_id=f"c{n}")
        await svc.settle()
        svc.broker.fail_next_commit(ABORTABLE)
        await svc.commit()  # fails: aborted, read again from the committed offsets
        assert svc.broker.transactions["aborted"] == 1
        assert svc.outputs() == []
        await svc.settle()
        await svc.commit()
        texts = sorted(e["text"] for e in svc.outputs("response_ready"))
        topic = svc.settings.topic("response_ready")
        written = len(svc.broker.records(topic))
    assert texts == ["echo: m0", "echo: m1", "echo: m2"]  # each once, committed
    assert written == 6  # the aborted three stay in the log, never read
    assert svc.broker.transactions == {"committed": 1, "aborted": 1}


async def test_a_record_failing_inside_the_transaction_aborts_it_at_the_next_commit() -> None:
    async with TestService(build(), **EOS) as svc:
        svc.broker.hold_acknowledgements()
        await svc.send("message_received", chat("hi"))
        topic = svc.settings.topic("response_ready")
        await svc.until(lambda: len(svc.broker.records(topic)) == 1, "the output")
        held, svc.broker.held_acks = svc.broker.held_acks or [], None
        for on_ack, record in held:
            on_ack(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"), record)
        await svc.commit()
        assert svc.broker.transactions["aborted"] == 1
        await svc.settle()
        await svc.commit()
        assert [e["text"] for e in svc.outputs("response_ready")] == ["echo: hi"]


async def test_a_dead_letter_commits_in_the_transaction_with_what_the_handler_emitted() -> None:
    service = Service("rejecter", settings=Settings(), emits=["response_ready"])

    @service.handler("message_received")
    async def reject(event: Event, ctx: Context) -> None:
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": "refused"})
        raise RejectEvent("no")

    async with TestService(service, **EOS) as svc:
        await svc.send("message_received", chat("hi"))
        await svc.settle()
        assert svc.dead_letters() == [] and svc.outputs() == []
        await svc.commit()
        assert len(svc.dead_letters()) == 1
        assert [e["text"] for e in svc.outputs("response_ready")] == ["refused"]


def counting_service(broker: MemoryBroker) -> tuple[Service, list[str]]:
    """Counts messages per conversation in a changelog store; emits the count."""
    settings = Settings()
    service = Service("counter", settings=settings, emits=["response_ready"])
    changelog = settings.topic("agent_state_changelog")

    def read(_topics: list[str], starts: dict[int, int | None]) -> dict[int, Restored]:
        out = {}
        for partition in starts:
            log = broker.partitions(changelog)[partition]
            result = Restored(partition, 0, len(log), True)
            for record in log:
                if record.visible and record.key() is not None:
                    value = record.value()
                    key = (record.key() or b"").decode()
                    result.values[key] = None if value is None else decode_value(value)
            out[partition] = result
        return out

    store = ChangelogStore(
        settings, "agent_state_changelog", service="counter", reader=read, retain_seconds=600
    )
    store.attach(service)
    handled: list[str] = []

    @service.handler("message_received")
    async def count(event: Event, ctx: Context) -> None:
        handled.append(event["text"])
        n = (store.get(ctx, event.conversation_id) or {"n": 0})["n"] + 1
        store.put(ctx, event.conversation_id, {"n": n})
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": str(n)})

    return service, handled


async def test_state_written_in_an_aborted_transaction_is_dropped_and_written_once() -> None:
    broker = MemoryBroker(lambda _topic: 4)
    service, handled = counting_service(broker)
    async with TestService(service, broker=broker, **EOS) as svc:
        await svc.send("message_received", chat("first"), conversation_id="c1")
        await svc.settle()
        await svc.commit()
        await svc.send("message_received", chat("second"), conversation_id="c1")
        await svc.settle()
        broker.fail_next_commit(ABORTABLE)
        await svc.commit()
        await svc.settle()
        await svc.commit()
        changelog = [
            decode_value(r.value() or b"")
            for r in broker.records(svc.settings.topic("agent_state_changelog"), committed=True)
        ]
        counts = [e["text"] for e in svc.outputs("response_ready")]
    assert handled == ["first", "second", "second"]  # handled again after the abort
    assert counts == ["1", "2"]  # from the committed state, not the aborted write
    assert changelog == [{"n": 1}, {"n": 2}]  # one write per input


async def test_a_fenced_instance_stops_and_its_open_transaction_is_aborted() -> None:
    svc = TestService(build(), instance_id="a", **EOS)
    with pytest.raises(TransactionFencedError, match="fenced"):
        async with svc:
            await svc.send("message_received", chat("hi"))
            await svc.settle()
            transaction = svc.runner.committer.transaction
            assert transaction is not None and transaction.transactional_id == "echo-a"
            # A restarted instance with the same id takes over.
            successor = MemoryTransactionalProducer(
                svc.broker, asyncio.get_running_loop(), "echo-a"
            )
            successor.init_transactions(1.0)
            await svc.commit()
    assert svc.outputs() == []
    assert svc.committed() == {}
    assert svc.broker.transactions == {"committed": 0, "aborted": 1}


def test_the_transactional_id_names_the_group_and_the_instance() -> None:
    assert transactional_id(Settings(instance_id="pod-1"), "g", {}) == "g-pod-1"
    static = {"group.instance.id": "static-1"}
    assert transactional_id(Settings(), "g", static) == "g-static-1"
    default = transactional_id(Settings(), "g", {})
    assert default.startswith(f"g-{socket.gethostname()}-")


def test_at_least_once_is_the_default() -> None:
    assert Settings().processing_guarantee == "at_least_once"

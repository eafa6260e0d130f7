"""``pipeline dlq`` on a real broker, run as the real command: a handler dead-letters an
event, list and show give its error and source position, the fixed handler processes the
redriven letter, and a second redrive (or many at once) produces nothing more."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.config import Settings
from pipeline.deadletters import DeadLetterStore, Redrive
from pipeline.errors import AlreadyRedriven, RedriveConflictError
from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.dead_letter import Failure, dead_letter_record
from pipeline.runtime.service import Service
from tests.environment import environment_without_settings
from tests.integration.runtime_support import (
    REPO,
    SERDE,
    Causes,
    message,
    produce_events,
    read_all,
    read_all_async,
    running,
    settings_for,
)

TOPICS = ("message_received", "response_ready", "dead_letters", "dead_letter_redrives")


def picky(settings: Settings, *, fixed: bool) -> Service:
    """Echoes messages; before the fix it fails on the ones asking for a refund."""
    service = Service("picky", settings=settings)

    @service.handler("message_received")
    async def respond(event: Event, ctx: Context) -> None:
        if not fixed and "refund" in event["text"]:
            raise RuntimeError(f"no handling for refunds yet: {event['text']!r}")
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": event["text"].upper()})

    return service


def pipeline_cli(bootstrap: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline ARGS`` in a process of its own, as an operator runs it."""
    env = {
        **environment_without_settings(),
        "PIPELINE_BOOTSTRAP_SERVERS": bootstrap,
        "PIPELINE_TOPIC_PREFIX": prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def end_offsets(bootstrap: str, topic: str) -> int:
    """How many offsets ``topic``'s partitions hold together (transaction markers too)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ends"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        )
    finally:
        consumer.close()


async def test_a_dead_letter_is_listed_shown_and_redriven_once_to_the_fixed_handler(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    inputs, outputs, dead, redrives = make_topics(*TOPICS, partitions=2)
    settings = settings_for(kafka_bootstrap, topic_prefix, max_retries=1)
    cli = lambda *args: asyncio.to_thread(pipeline_cli, kafka_bootstrap, topic_prefix, *args)  # noqa: E731
    refund = message("conv-r", "I want a refund")
    fine = [message("conv-a", "hello"), message("conv-r", "where is my parcel?")]

    async with running(picky(settings, fixed=False)):
        produce_events(kafka_bootstrap, inputs, [fine[0], refund, fine[1]])
        await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= 2, 60)
        await read_all_async(kafka_bootstrap, dead, bool, 60)
    [original] = [
        r
        for r in read_all(kafka_bootstrap, inputs, lambda r: len(r) >= 3, 30)
        if r.event().id == refund.id
    ]

    listed = await cli("dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [letter] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == (
        inputs,
        original.partition,
        original.offset,
    )
    assert (letter["error_type"], letter["error"]) == (
        "RuntimeError",
        "no handling for refunds yet: 'I want a refund'",
    )
    assert (letter["stage"], letter["attempts"], letter["service"]) == ("handler", 2, "picky")
    assert (letter["event_type"], letter["conversation_id"]) == ("message_received", "conv-r")
    assert letter["redriven"] is None
    letter_id = letter["letter_id"]
    position = f"{inputs}[{original.partition}]@{original.offset}"

    table = await cli("dlq", "list", "--topic", "message_received")
    assert table.returncode == 0, table.stderr
    [line] = table.stdout.splitlines()
    assert line.startswith(letter_id) and position in line, line
    assert "RuntimeError: no handling for refunds yet" in line
    other = await cli("dlq", "list", "--topic", "tool_called")
    assert (other.returncode, other.stdout, other.stderr.strip()) == (0, "", "no dead letters")

    shown = await cli("dlq", "show", letter_id)
    assert shown.returncode == 0, shown.stderr
    assert f"source            {position}" in shown.stdout
    assert "error             RuntimeError: no handling for refunds yet" in shown.stdout
    assert "redriven          no" in shown.stdout
    unknown = await cli("dlq", "show", "1:999999")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: no dead letter 1:999999"), unknown.stderr

    inputs_before = end_offsets(kafka_bootstrap, inputs)
    async with running(picky(settings, fixed=True)):
        redriven = await cli("dlq", "redrive", letter_id, "--operator", "op-ada")
        assert redriven.returncode == 0, redriven.stderr
        assert redriven.stdout.startswith(f"redriven {letter_id} to {inputs}["), redriven.stdout
        answers = await read_all_async(kafka_bootstrap, outputs, Causes({str(refund.id)}), 60)

        again = await cli("dlq", "redrive", letter_id, "--operator", "op-bob")
        assert again.returncode == 1, again.stderr
        assert again.stderr.startswith(f"refused: dead letter {letter_id} was already redriven "), (
            again.stderr
        )
        assert "by op-ada" in again.stderr and "nothing was produced" in again.stderr
        # A later message of the conversation is answered: anything before it was handled.
        later = produce_events(kafka_bootstrap, inputs, [message("conv-r", "thanks")])
        answers = await read_all_async(kafka_bootstrap, outputs, Causes({str(later[0].id)}), 60)

    texts = [r.event()["text"] for r in answers if r.event().conversation_id == "conv-r"]
    assert texts == ["WHERE IS MY PARCEL?", "I WANT A REFUND", "THANKS"]
    # The copy, the redrive's transaction marker, the later message: nothing twice.
    assert end_offsets(kafka_bootstrap, inputs) == inputs_before + 3
    copies = [
        r
        for r in read_all(kafka_bootstrap, inputs, lambda r: len(r) >= 5, 30)
        if r.event().id == refund.id
    ]
    assert len(copies) == 2
    copy = copies[1]
    assert (copy.key, copy.value) == (original.key, original.value)
    assert copy.headers[: len(original.headers)] == original.headers
    assert ("dlt-redriven-from", letter_id.encode()) in copy.headers
    assert ("dlt-redriven-by", b"op-ada") in copy.headers
    records = read_all(kafka_bootstrap, redrives, lambda r: len(r) >= 1, 30)
    assert len(records) == 1

    shown = await cli("dlq", "show", letter_id, "--json")
    assert shown.returncode == 0, shown.stderr
    redrive = json.loads(shown.stdout)["redriven"]
    assert redrive["operator"] == "op-ada"
    assert redrive["target"] == f"{inputs}[{copy.partition}]@{copy.offset}"


def write_letter(bootstrap: str, dead: str, source: str, event: Event, copies: int) -> None:
    """A dead letter of ``event`` read at source[0]@0, written ``copies`` times (as a crash
    between writing it and committing the source offset does)."""
    record = _Source(source, SERDE.encode(event), event.conversation_id.encode())
    value, headers = dead_letter_record(
        SERDE, record, Failure("handler", RuntimeError("boom"), 1, "agent")
    )
    producer = Producer({"bootstrap.servers": bootstrap})
    for _ in range(copies):
        producer.produce(dead, value=value, key=record.key(), headers=headers, partition=0)
    assert producer.flush(30) == 0


class _Source:
    """The consumed record a dead letter is made from."""

    def __init__(self, topic: str, value: bytes, key: bytes) -> None:
        self._topic, self._value, self._key = topic, value, key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return [("event-type", b"message_received")]

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


def test_concurrent_redrives_of_a_letter_and_of_its_copy_produce_it_once(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    inputs, _, dead, redrives = make_topics(*TOPICS, partitions=2)
    settings = settings_for(kafka_bootstrap, topic_prefix)
    write_letter(kafka_bootstrap, dead, inputs, message("conv-c", "hi"), copies=2)
    stores = [DeadLetterStore.from_settings(settings) for _ in range(4)]
    start = threading.Barrier(len(stores))
    outcomes: list[Any] = [None] * len(stores)

    def redrive(n: int) -> None:
        letter_id = f"0:{n % 2}"  # the letter and its copy, two stores each
        stores[n].get(letter_id)  # connected and read: the redrives start together
        start.wait()
        try:
            outcomes[n] = stores[n].redrive(letter_id, operator=f"op-{n}")
        except (AlreadyRedriven, RedriveConflictError) as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=redrive, args=(n,)) for n in range(len(stores))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for store in stores:
            store.close()

    done = [o for o in outcomes if isinstance(o, Redrive)]
    refused = [type(o).__name__ for o in outcomes if not isinstance(o, Redrive)]
    print(f"\n4 concurrent redrives of a letter and its copy: 1 done, refused: {refused}")
    assert len(done) == 1, outcomes
    assert all(
        isinstance(o, AlreadyRedriven | RedriveConflictError) for o in outcomes if o not in done
    )
    assert len(read_all(kafka_bootstrap, inputs, lambda r: False, 3)) == 1
    assert len(read_all(kafka_bootstrap, redrives, lambda r: False, 3)) == 1
    later = DeadLetterStore.from_settings(settings)
    try:
        assert {e.redriven for e in later.list()} == {done[0]}
    finally:
        later.close()

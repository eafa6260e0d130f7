"""Crash, graceful shutdown and poison events: nothing lost, nothing skipped."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pipeline.events.model import Event
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from tests.integration.runtime_support import (
    APPS_DIR,
    SERDE,
    SHORT_SESSION,
    Causes,
    message,
    produce,
    produce_events,
    read_all,
    read_all_async,
    running,
    settings_for,
    start_service,
    stop_service,
)


def start_relay(bootstrap: str, prefix: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start the relay app from ``service_apps`` in a subprocess."""
    pythonpath = f"{APPS_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return start_service(
        "service_apps:build_relay",
        bootstrap=bootstrap,
        prefix=prefix,
        log=log,
        env={"PYTHONPATH": pythonpath, **SHORT_SESSION, **env},
    )


def outputs_by_cause(records: list) -> dict[str, list[str]]:
    """Input event id -> ids of the outputs it caused (one per repeat)."""
    caused: dict[str, list[str]] = {}
    for record in records:
        event = record.event()
        caused.setdefault(str(event.metadata.causation_id), []).append(str(event.id))
    return caused


def wait_for_outputs(bootstrap: str, topic: str, count: int, timeout: float = 30) -> None:
    read_all(bootstrap, topic, lambda r: len(r) >= count, timeout)


def test_sigkill_mid_run_then_restart_loses_nothing(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]], tmp_path: Path
) -> None:
    inputs, outputs, _ = make_topics(
        "message_received", "response_ready", "dead_letters", partitions=4
    )
    events = produce_events(
        kafka_bootstrap,
        inputs,
        (message(f"conv-{i % 300}", str(i)) for i in range(6000)),
    )
    log = tmp_path / "relay.log"
    # Eight at a time, about 5 ms each: several seconds of work, so the kill lands mid-run
    # however soon the outputs are seen (at full speed the relay can finish all 6,000 first).
    first = start_relay(
        kafka_bootstrap,
        topic_prefix,
        log,
        RELAY_MAX_SLEEP_SECONDS="0.01",
        PIPELINE_MAX_IN_FLIGHT="8",
    )
    try:
        wait_for_outputs(kafka_bootstrap, outputs, 1500, timeout=60)
    finally:
        stop_service(first, signal.SIGKILL, timeout=10)
    assert first.returncode == -signal.SIGKILL
    partial = read_all(kafka_bootstrap, outputs, lambda r: False, timeout=2)
    assert len(partial) < len(events), "the kill came too late to test anything"

    second = start_relay(kafka_bootstrap, topic_prefix, log, RELAY_MAX_SLEEP_SECONDS="0.01")
    try:
        wanted = {str(e.id) for e in events}
        records = read_all(kafka_bootstrap, outputs, Causes(wanted), timeout=180)
    finally:
        stop_service(second)

    caused = outputs_by_cause(records)
    missing = wanted - set(caused)
    assert not missing, f"{len(missing)} inputs have no output; log:\n{log.read_text()[-3000:]}"
    repeats = {cause: ids for cause, ids in caused.items() if len(ids) > 1}
    # A repeat is only acceptable as the same event again (same derived event id).
    assert all(len(set(ids)) == 1 for ids in repeats.values())
    assert set(caused) == wanted
    print(
        f"\nSIGKILL after {len(partial)} of {len(events)} outputs; after restart every "
        f"input has its output; {sum(len(i) - 1 for i in repeats.values())} repeated outputs "
        f"({len(repeats)} inputs), all with the same event id"
    )


def test_sigterm_mid_run_drains_commits_and_restarts_without_loss(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]], tmp_path: Path
) -> None:
    inputs, outputs, _ = make_topics(
        "message_received", "response_ready", "dead_letters", partitions=4
    )
    events = produce_events(
        kafka_bootstrap,
        inputs,
        (message(f"conv-{i % 200}", str(i)) for i in range(4000)),
    )
    log = tmp_path / "relay.log"
    first = start_relay(kafka_bootstrap, topic_prefix, log, RELAY_MAX_SLEEP_SECONDS="0.02")
    wait_for_outputs(kafka_bootstrap, outputs, 800, timeout=60)
    started = time.monotonic()
    assert stop_service(first) == 0, log.read_text()[-3000:]
    print(f"\nSIGTERM to exit: {time.monotonic() - started:.2f}s")
    partial = read_all(kafka_bootstrap, outputs, lambda r: False, timeout=2)
    assert len(partial) < len(events), "the SIGTERM came too late to test anything"
    early = sum(len(ids) - 1 for ids in outputs_by_cause(partial).values())
    assert early == 0, f"{early} repeats before the restart"

    second = start_relay(kafka_bootstrap, topic_prefix, log, RELAY_MAX_SLEEP_SECONDS="0.0")
    try:
        wanted = {str(e.id) for e in events}
        records = read_all(kafka_bootstrap, outputs, Causes(wanted), timeout=120)
    finally:
        assert stop_service(second) == 0
    caused = outputs_by_cause(records)
    assert set(caused) == wanted, f"{len(wanted - set(caused))} inputs lost"
    repeats = sum(len(ids) - 1 for ids in caused.values())
    print(f"graceful stop after {len(partial)} of {len(events)}; {repeats} repeats on restart")
    # A drained, committed stop hands over exactly where it stopped.
    assert repeats == 0


async def test_poison_events_are_dead_lettered_and_others_flow(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    inputs, outputs, dead = make_topics(
        "message_received", "response_ready", "dead_letters", partitions=3
    )
    settings = settings_for(kafka_bootstrap, topic_prefix, max_retries=2)
    service = Service("poisoned", settings=settings)
    attempts: Counter[str] = Counter()

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        if event.conversation_id == "poison":
            attempts[event["text"]] += 1
            raise RuntimeError(f"cannot handle {event['text']}")
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": event["text"]})

    unknown_fingerprint = b"\xc3\x01" + b"\x00" * 8 + b"\x02"
    garbage = b"definitely not avro"
    good_before = [message(f"ok-{i}", f"before-{i}") for i in range(50)]
    poison = [message("poison", f"p{i}") for i in range(3)]
    produce_events(kafka_bootstrap, inputs, good_before[:25] + poison + good_before[25:])
    produce(kafka_bootstrap, inputs, [("bytes-1", garbage), ("bytes-2", unknown_fingerprint)])

    async with running(service) as task:
        await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= 50, 60)
        letters = await read_all_async(kafka_bootstrap, dead, lambda r: len(r) >= 5, 60)
        # The service is still running and still handles new conversations.
        assert not task.done()
        good_after = produce_events(
            kafka_bootstrap, inputs, [message(f"later-{i}", f"after-{i}") for i in range(20)]
        )
        records = await read_all_async(kafka_bootstrap, outputs, lambda r: len(r) >= 70, 60)
        assert not task.done()

    assert {r.event()["text"] for r in records} == {e["text"] for e in good_before + good_after}
    assert len(letters) == 5
    decoded = [SERDE.decode_record(r.value) for r in letters]
    assert {t for t, _ in decoded} == {"dead_letter"}
    by_key = {r.key: rec for r, (_, rec) in zip(letters, decoded, strict=True)}
    for key, raw in [("bytes-1", garbage), ("bytes-2", unknown_fingerprint)]:
        letter = by_key[key]
        assert letter["stage"] == "decode"
        assert letter["value"] == raw
        assert letter["source_topic"] == inputs
        assert letter["attempts"] == 0
    assert by_key["bytes-1"]["error_type"] == "CorruptEventError"
    assert by_key["bytes-2"]["error_type"] == "UnknownSchemaError"
    poison_letters = [
        rec for r, (_, rec) in zip(letters, decoded, strict=True) if r.key == "poison"
    ]
    assert len(poison_letters) == 3
    for letter in poison_letters:
        original = SERDE.decode(letter["value"])
        assert letter["stage"] == "handler"
        assert letter["error_type"] == "RuntimeError"
        assert letter["error_message"] == f"cannot handle {original['text']}"
        assert letter["attempts"] == 3
        assert letter["conversation_id"] == "poison"
    assert attempts == {"p0": 3, "p1": 3, "p2": 3}
    # Source coordinates point at the original record.
    originals = await asyncio.to_thread(
        read_all, kafka_bootstrap, inputs, lambda r: len(r) >= 75, 30
    )
    at = {(r.partition, r.offset): r.value for r in originals}
    for letter in (rec for _, rec in decoded):
        assert at[(letter["source_partition"], letter["source_offset"])] == letter["value"]


class Escaped(BaseException):
    """Not an Exception: nothing in a handler's retry path may swallow it."""


async def test_an_error_escaping_the_runtime_stops_the_service(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    inputs, _, _ = make_topics("message_received", "response_ready", "dead_letters")
    service = Service("escaping", settings=settings_for(kafka_bootstrap, topic_prefix))

    @service.handler("message_received")
    async def handle(event: Event, ctx: Context) -> None:
        raise Escaped("the handler broke out")

    produce_events(kafka_bootstrap, inputs, [message("c1", "x")])
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    done, _ = await asyncio.wait({task}, timeout=60)
    stop.set()
    assert task in done, "the service kept running with an offset it can never commit"
    assert isinstance(task.exception(), Escaped)

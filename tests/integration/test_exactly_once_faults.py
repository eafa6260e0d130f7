"""Exactly-once on a real broker when a Kafka call never returns, and lag 0 on a topic
written in transactions.

The stalling relay (``service_apps:build_stalling_relay``) is the real service on the
real client, except that its ``send_offsets_to_transaction`` blocks forever while a
trigger file exists: the call librdkafka can leave blocked past its own timeout while a
group coordinator is down. Outputs are read with ``read_committed`` only after every
partition's last stable offset reached its high watermark, and counted by event id and
by content.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer

from pipeline.config import bundled_dir
from pipeline.dev.kafka.tools import group_lag as kafka_tool_lag
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.serde import SingleObjectSerde
from tests.integration.runtime_support import (
    APPS_DIR,
    SHORT_SESSION,
    Record,
    message,
    produce_events,
    read_all,
    start_service,
    stop_service,
)
from tests.kafka_admin import group_lag, wait_stable

EOS_ENV = {
    "PIPELINE_PROCESSING_GUARANTEE": "exactly_once",
    "PIPELINE_INSTANCE_ID": "stall-1",
    "PYTHONPATH": f"{APPS_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    **SHORT_SESSION,
}
EVENTS = 20


def answers(bootstrap: str, topic: str, wanted: int) -> list[Record]:
    """Every committed output, read once no transaction is open on the topic."""
    assert wait_stable(bootstrap, [topic], timeout=90) == {}, "a transaction stayed open"
    return read_all(bootstrap, topic, lambda r: len(r) >= wanted, 30)


def assert_once(records: list[Record], inputs: int) -> None:
    by_id = Counter(str(r.event().id) for r in records)
    by_content = Counter((r.event().conversation_id, r.event()["text"]) for r in records)
    assert max(by_id.values()) == 1, "a duplicate output (same event id)"
    assert max(by_content.values()) == 1, "a duplicate output (same content)"
    assert len(records) == inputs


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds:g}s"
        time.sleep(0.1)


def test_a_transaction_call_that_never_returns_exits_the_instance_and_repeats_nothing(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]], tmp_path: Path
) -> None:
    inbox, outbox, _ = make_topics("message_received", "response_ready", "dead_letters")
    trigger = tmp_path / "stall"
    trigger.touch()
    log = tmp_path / "relay.log"
    env = {**EOS_ENV, "STALL_FILE": str(trigger), "PIPELINE_KAFKA_CALL_TIMEOUT_SECONDS": "2"}
    start = dict(bootstrap=kafka_bootstrap, prefix=topic_prefix, log=log)
    produce_events(kafka_bootstrap, inbox, [message(f"c{i}", str(i)) for i in range(EVENTS)])
    stalling = start_service("service_apps:build_stalling_relay", **start, env=env)
    wait_for(trigger.with_suffix(".stalled").exists, 60, "stalled commit")
    stalled_at = time.monotonic()
    code = stalling.wait(30)
    took = time.monotonic() - stalled_at
    history = log.read_text()
    assert code == 1, history[-3000:]
    assert took < 2 + 1 + 10, f"exited {took:.1f}s after the call stalled"  # deadline + close
    assert "send_offsets_to_transaction did not return within 3s" in history
    trigger.unlink()
    # Its successor (the same instance id) fences it and handles the inputs again.
    successor = start_service("service_apps:build_stalling_relay", **start, env=env)
    try:
        outputs = answers(kafka_bootstrap, outbox, EVENTS)
    finally:
        assert stop_service(successor) == 0, log.read_text()[-3000:]
    assert_once(outputs, EVENTS)


def test_sigterm_is_honoured_within_the_drain_deadline_while_a_transaction_call_never_returns(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]], tmp_path: Path
) -> None:
    inbox, outbox, _ = make_topics("message_received", "response_ready", "dead_letters")
    trigger = tmp_path / "stall"
    trigger.touch()
    log = tmp_path / "relay.log"
    env = {
        **EOS_ENV,
        "STALL_FILE": str(trigger),
        "PIPELINE_KAFKA_CALL_TIMEOUT_SECONDS": "120",
        "PIPELINE_DRAIN_TIMEOUT_SECONDS": "4",
    }
    start = dict(bootstrap=kafka_bootstrap, prefix=topic_prefix, log=log)
    produce_events(kafka_bootstrap, inbox, [message(f"c{i}", str(i)) for i in range(EVENTS)])
    stalling = start_service("service_apps:build_stalling_relay", **start, env=env)
    wait_for(trigger.with_suffix(".stalled").exists, 60, "stalled commit")
    stopping = time.monotonic()
    stalling.send_signal(signal.SIGTERM)
    code = stalling.wait(30)
    took = time.monotonic() - stopping
    history = log.read_text()
    assert took < 4 + 3, f"SIGTERM took {took:.1f}s with a 4 s drain deadline\n{history[-3000:]}"
    assert code == 1, history[-3000:]  # it could not commit: not a clean stop
    assert "exiting with a Kafka call still stuck in the client" in history
    trigger.unlink()
    successor = start_service("service_apps:build_stalling_relay", **start, env=env)
    try:
        outputs = answers(kafka_bootstrap, outbox, EVENTS)
    finally:
        assert stop_service(successor) == 0, log.read_text()[-3000:]
    assert_once(outputs, EVENTS)


def test_a_group_reading_a_topic_written_in_transactions_ends_with_lag_0(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]], tmp_path: Path
) -> None:
    """Every transaction ends with a marker; committing the last record's offset + 1
    would leave Kafka's group tool showing lag 1 on every partition forever."""
    inbox, outbox, _ = make_topics("message_received", "response_ready", "dead_letters")
    serde = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
    upstream = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "transactional.id": f"{topic_prefix}upstream",
            "log_level": 2,
        }
    )
    upstream.init_transactions(30)
    for batch in range(3):
        upstream.begin_transaction()
        for i in range(5):
            event = message(f"c{i}", f"{batch}.{i}")
            upstream.produce(inbox, serde.encode(event), event.conversation_id)
        upstream.commit_transaction(30)
    log = tmp_path / "relay.log"
    start = dict(bootstrap=kafka_bootstrap, prefix=topic_prefix, log=log)
    relay = start_service("service_apps:build_relay", **start, env=EOS_ENV)
    try:
        outputs = answers(kafka_bootstrap, outbox, 15)
        assert len(outputs) == 15
        group = f"{topic_prefix}relay"
        wait_for(lambda: sum(group_lag(kafka_bootstrap, group, inbox).values()) == 0, 30, "lag 0")
    finally:
        assert stop_service(relay) == 0, log.read_text()[-3000:]
    assert group_lag(kafka_bootstrap, group, inbox) == {0: 0}
    # And as Kafka's own tool (kafka-consumer-groups --describe) reports it.
    assert kafka_tool_lag(kafka_bootstrap, group) == {(inbox, 0): 0}

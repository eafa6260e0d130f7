"""The runner's fetch: a record is handed over as soon as the client has it, records that
arrived together come back together, and with nothing to fetch it blocks instead of spinning.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline.runtime import runner as runner_module
from pipeline.runtime.runner import Runner
from pipeline.runtime.service import Service
from tests.integration.runtime_support import produce, settings_for

# Far above anything a fetch of records already sent can take: a fetch that waited for its
# timeout instead of returning with the first record would take at least this long.
LONG_TIMEOUT = 30.0


@pytest.fixture
def fetching(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> Iterator[tuple[Runner, str]]:
    (topic,) = make_topics("message_received")
    runner = Runner(Service("fetch", settings=settings_for(kafka_bootstrap, topic_prefix)))
    runner.consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": f"{topic_prefix}fetch"}
    )
    runner.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    yield runner, topic
    runner.consumer.close()


def test_records_come_back_at_once_and_together_not_after_the_timeout(
    fetching: tuple[Runner, str], kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, topic = fetching
    monkeypatch.setattr(runner_module, "POLL_TIMEOUT_SECONDS", LONG_TIMEOUT)
    # One producer batch: the records reach the client in one fetch response.
    produce(kafka_bootstrap, topic, [("k", b"1"), ("k", b"2"), ("k", b"3")])
    started = time.monotonic()
    _, batch, _ = runner._consume()
    elapsed = time.monotonic() - started
    assert [m.value() for m in batch] == [b"1", b"2", b"3"]
    # librdkafka's batch consume would have held them until the timeout.
    assert elapsed < LONG_TIMEOUT / 2, f"fetch took {elapsed:.1f}s"


def test_with_nothing_to_fetch_it_blocks_for_the_timeout_without_spinning(
    fetching: tuple[Runner, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, _ = fetching
    monkeypatch.setattr(runner_module, "POLL_TIMEOUT_SECONDS", 1.0)
    runner._consume()  # the first call connects and joins; measure the next one
    wall, cpu = time.monotonic(), time.thread_time()
    assert list(runner._consume()[1]) == []
    wall, cpu = time.monotonic() - wall, time.thread_time() - cpu
    assert wall >= 0.9
    assert cpu < 0.1 * wall, f"{cpu:.3f}s of CPU in {wall:.2f}s"

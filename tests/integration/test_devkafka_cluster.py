"""`DevKafkaCluster`: three KRaft nodes on one machine, replication 3, min.insync.replicas 2.

One cluster for the module (about half a minute to start on two cores): produced records
survive a node killed with SIGKILL, a paused node and a restart of the whole cluster with
its data kept.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.dev.kafka import DevKafkaCluster, port_in_use
from pipeline.errors import DevKafkaError
from tests.environment import skip_or_fail

HEAP = ("-Xmx384m",)
# Three JVMs starting on two shared cores: allow for a loaded machine.
START_TIMEOUT = 180.0


def _free_base_port(span: int = 6) -> int:
    for _ in range(200):
        base = random.randrange(20000, 30000, 2)
        if not any(port_in_use(base + i) for i in range(span)):
            return base
    raise RuntimeError("no run of free ports")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevKafkaCluster]:
    data = tmp_path_factory.mktemp("cluster")
    try:
        c = DevKafkaCluster(
            3, _free_base_port(), data_dir=data, heap_opts=HEAP, start_timeout=START_TIMEOUT
        ).start()
    except DevKafkaError as exc:  # no Java or Maven here: the same rule as the broker fixture
        skip_or_fail(f"the three-node cluster did not start: {exc}")
    try:
        yield c
    finally:
        c.stop()


def _produce(bootstrap: str, topic: str, values: range) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    failures: list[str] = []
    for v in values:
        producer.produce(
            topic,
            str(v).encode(),
            key=b"k",
            on_delivery=lambda err, _msg: failures.append(str(err)) if err else None,
        )
    assert producer.flush(60) == 0
    assert failures == []


def _read_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[int]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    values: list[int] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(values) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is None:
                    values.append(int(msg.value()))
    finally:
        consumer.close()
    return values


def _isr(bootstrap: str, topic: str) -> list[int]:
    """The in-sync replicas of the topic's partition ([] while metadata lacks it)."""
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    partitions = meta.topics[topic].partitions if topic in meta.topics else {}
    return sorted(partitions[0].isrs) if 0 in partitions else []


def _wait_isr(bootstrap: str, topic: str, size: int, timeout: float = 120.0) -> list[int]:
    deadline = time.monotonic() + timeout
    isr: list[int] = []
    while True:
        with contextlib.suppress(Exception):  # a node that is still coming back
            isr = _isr(bootstrap, topic)
        if len(isr) == size or time.monotonic() > deadline:
            return isr
        time.sleep(0.5)


def test_three_nodes_replicate_and_survive_a_kill_a_pause_and_a_restart(
    cluster: DevKafkaCluster, tmp_path: Path
) -> None:
    bootstrap = cluster.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    assert sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 3]
    topic = f"t-{uuid.uuid4().hex[:8]}"
    futures = admin.create_topics(
        [NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})], operation_timeout=30
    )
    futures[topic].result(timeout=30)
    assert _wait_isr(bootstrap, topic, 3) == [1, 2, 3]

    _produce(bootstrap, topic, range(0, 100))

    # SIGKILL a node: with two of three in sync, acks=all still succeeds.
    assert cluster.kill(2)
    assert not cluster.node(2).is_running()
    _produce(bootstrap, topic, range(100, 200))
    cluster.start_node(2)
    assert _wait_isr(bootstrap, topic, 3) == [1, 2, 3]

    # A frozen node (SIGSTOP) is dropped from the ISR and its partitions move; writes go on.
    cluster.pause(3)
    try:
        _produce(bootstrap, topic, range(200, 300))
    finally:
        cluster.resume(3)
    assert _wait_isr(bootstrap, topic, 3) == [1, 2, 3]

    # A stop and start of the whole cluster keeps the data (the default for the CLI too).
    assert cluster.stop()
    again = DevKafkaCluster(
        3,
        cluster.port,
        data_dir=cluster.data_dir,
        keep_data=True,
        heap_opts=HEAP,
        start_timeout=START_TIMEOUT,
    ).start()
    try:
        values = _read_all(again.bootstrap_servers, topic, 300)
    finally:
        again.stop()
    assert sorted(values) == list(range(300))
    assert values == sorted(values)  # one key, one partition: in the order produced

"""The broker the integration tests get works: keyed messages come back complete and in order."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

KEYS = [f"key-{i}" for i in range(5)]
COUNT = 100


def test_keyed_messages_round_trip_in_order(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    (topic,) = make_topics("smoke", partitions=3)

    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    sent: dict[str, list[int]] = {k: [] for k in KEYS}
    for i in range(COUNT):
        key = KEYS[i % len(KEYS)]
        producer.produce(topic, key=key, value=str(i).encode(), on_delivery=on_delivery)
        sent[key].append(i)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still queued after 30 s"
    assert errors == []

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"smoke-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: dict[str, list[int]] = {k: [] for k in KEYS}
    partition_of: dict[str, set[int]] = {k: set() for k in KEYS}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        total = 0
        while total < COUNT and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                raise KafkaException(msg.error())
            key = msg.key()
            value = msg.value()
            assert key is not None and value is not None
            received[key.decode()].append(int(value))
            partition_of[key.decode()].add(msg.partition())
            total += 1
    finally:
        consumer.close()

    assert sum(len(v) for v in received.values()) == COUNT
    assert received == sent  # per key: every message, in the order produced
    assert all(len(p) == 1 for p in partition_of.values()), partition_of

"""Our murmur2 picks the partition librdkafka's murmur2_random producer writes to."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import KafkaError, Message, Producer

from pipeline.partitioner import partition_for


def test_partition_for_agrees_with_the_producer(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    (topic,) = make_topics("keys", partitions=12)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    landed: dict[str, int] = {}
    keys = [f"conv-{i}" for i in range(300)] + ["a", "ab", "abc", "abcd", "é", "slack:T1:C2:1.5"]

    def record(key: str) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            assert err is None
            landed[key] = msg.partition() or 0

        return on_delivery

    for key in keys:
        producer.produce(topic, key=key, value=b"x", on_delivery=record(key))
    assert producer.flush(30) == 0
    assert len(set(landed.values())) == 12
    assert {k: partition_for(k, 12) for k in keys} == landed

"""The ports wired to confluent-kafka: what a service uses in production."""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pipeline.runtime.ports import CommitCallback, PartitionsCallback
from pipeline.runtime.producer import AsyncProducer


class KafkaConsumer:
    """confluent-kafka's ``Consumer`` behind :class:`~pipeline.runtime.ports.ConsumerPort`."""

    def __init__(self, config: dict[str, Any], on_commit: CommitCallback) -> None:
        self._consumer = Consumer({**config, "on_commit": on_commit})

    def subscribe(
        self,
        topics: list[str],
        *,
        on_assign: PartitionsCallback,
        on_revoke: PartitionsCallback,
        on_lost: PartitionsCallback,
    ) -> None:
        self._consumer.subscribe(
            topics,
            on_assign=lambda _consumer, partitions: on_assign(partitions),
            on_revoke=lambda _consumer, partitions: on_revoke(partitions),
            on_lost=lambda _consumer, partitions: on_lost(partitions),
        )

    def consume(self, max_records: int, timeout: float) -> list[Message]:
        return self._consumer.consume(max_records, timeout)

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return self._consumer.committed(partitions, timeout=timeout)

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return self._consumer.position(partitions)

    def commit(self, offsets: list[TopicPartition], *, asynchronous: bool) -> None:
        if asynchronous:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        else:
            self._consumer.commit(offsets=offsets, asynchronous=False)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._consumer.pause(partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._consumer.resume(partitions)

    def high_watermark(self, topic: str, partition: int) -> int | None:
        try:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True
            )
        except KafkaException:
            return None
        return high if high >= 0 else None

    def close(self) -> None:
        self._consumer.close()

    def group_metadata(self) -> Any:
        return self._consumer.consumer_group_metadata()

    def seek(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._consumer.seek(tp)


class KafkaTransport:
    """Makes confluent-kafka clients for the runtime."""

    def consumer(self, config: dict[str, Any], on_commit: CommitCallback) -> KafkaConsumer:
        return KafkaConsumer(config, on_commit)

    def producer(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> AsyncProducer:
        return AsyncProducer(config, loop)

    def transactional_producer(
        self, config: dict[str, Any], loop: asyncio.AbstractEventLoop
    ) -> AsyncProducer:
        return AsyncProducer(config, loop)

"""A transactional producer that refuses a record at once (its transaction must abort)
reports it failed through the record's callback, so the transaction aborts and the inputs
are read again, instead of the exception stopping the service."""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import KafkaError

from pipeline.runtime.producer import AsyncProducer


async def test_a_record_refused_by_the_transaction_is_reported_failed() -> None:
    # No transaction begun: librdkafka refuses the record at once with an erroneous state,
    # as it does for a transaction that needs an abort. No broker is needed for that.
    producer = AsyncProducer(
        {"bootstrap.servers": "127.0.0.1:1", "transactional.id": "refused"},
        asyncio.get_running_loop(),
    )
    reports: list[tuple[KafkaError | None, Any]] = []
    try:
        queued = producer.produce_nowait(
            "t", b"value", "key", (), lambda err, msg: reports.append((err, msg))
        )
    finally:
        await producer.aclose(0)
    assert queued
    [(err, msg)] = reports
    assert err is not None and err.code() == KafkaError._STATE
    assert not err.fatal()
    assert msg is None

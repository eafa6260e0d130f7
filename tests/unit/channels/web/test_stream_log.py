"""Reading the web streams' topics: a lone record is handed on at once, not after the
batch's timeout."""

from __future__ import annotations

import time
from typing import Any

from pipeline.channels.web.stream_log import consume_available


class BatchConsumer:
    """librdkafka's batch consume: returns once ``count`` records are there or ``timeout``
    has passed (records arriving meanwhile are not modelled: none arrive here)."""

    def __init__(self, held: int) -> None:
        self.held = [f"record-{i}" for i in range(held)]
        self.calls: list[tuple[int, float]] = []

    def consume(self, count: int, timeout: float) -> list[Any]:
        self.calls.append((count, timeout))
        if len(self.held) < count:
            time.sleep(timeout)
        taken, self.held = self.held[:count], self.held[count:]
        return taken


def test_a_lone_record_is_returned_without_waiting_for_a_full_batch() -> None:
    consumer = BatchConsumer(held=1)
    started = time.monotonic()
    got = consume_available(consumer, 500, 0.5)  # type: ignore[arg-type]
    assert got == ["record-0"]
    assert time.monotonic() - started < 0.25, consumer.calls


def test_what_the_client_holds_comes_in_one_batch_and_idle_waits_the_timeout() -> None:
    busy = BatchConsumer(held=700)
    assert len(consume_available(busy, 500, 0.5)) == 500  # type: ignore[arg-type]
    idle = BatchConsumer(held=0)
    started = time.monotonic()
    assert consume_available(idle, 500, 0.1) == []  # type: ignore[arg-type]
    assert time.monotonic() - started >= 0.1

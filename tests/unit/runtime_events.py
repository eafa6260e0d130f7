"""Event bodies and keys for the runtime's unit tests (run through ``pipeline.testing``)."""

from __future__ import annotations

from typing import Any

from pipeline.partitioner import partition_for

REPLY_TO = {"channel": "web", "address": "http://127.0.0.1/cb", "thread_id": None}


def chat(text: str) -> dict[str, Any]:
    """A message_received body."""
    return {"channel": "web", "sender_id": "user-1", "text": text, "reply_to": REPLY_TO}


def reply(text: str) -> dict[str, Any]:
    """A response_ready body."""
    return {"reply_to": REPLY_TO, "text": text}


def same_partition(count: int, partitions: int) -> list[str]:
    """``count`` conversation ids whose records land on the same partition."""
    first = partition_for("conv-0", partitions)
    keys = [f"conv-{i}" for i in range(10_000) if partition_for(f"conv-{i}", partitions) == first]
    return keys[:count]

"""Creating topics on a development broker, for tests and benchmarks."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from pipeline.errors import DevKafkaError

__all__ = ["create_topics"]


def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 1, timeout: float = 30.0
) -> list[str]:
    """Create ``names`` (replication factor 1) and wait until the broker lists all of them.

    A name given twice is created once: confluent-kafka's Admin client crashes the process
    (a segmentation fault in its result callback) on a request that names a topic twice.
    """
    wanted = list(dict.fromkeys(names))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in wanted],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for future in futures.values():
        future.result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        ready = [
            n
            for n in wanted
            if n in topics
            and topics[n].error is None
            and len(topics[n].partitions) == partitions
            and all(p.leader >= 0 for p in topics[n].partitions.values())
        ]
        if len(ready) == len(wanted):
            return wanted
        if time.monotonic() > deadline:
            missing = sorted(set(wanted) - set(ready))
            raise DevKafkaError(f"topics not ready after {timeout:.0f}s: {missing}")
        time.sleep(0.1)

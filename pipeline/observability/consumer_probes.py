"""Liveness and readiness of a consumer service, as ``/healthz`` and ``/readyz`` answer them.

- Live (``/healthz``) unless the service stopped on an error, its event loop is stuck, a
  Kafka call (a fetch, a commit, a transaction call) has not returned for
  ``stuck_limit`` seconds, or the poll loop has not advanced for that long outside a
  rebalance: a restart helps then, and only then. A broker outage or a long state
  restore is no reason to kill the process (librdkafka's calls return on their timeouts
  while the cluster is away, and a restore runs in a rebalance callback).
- Ready (``/readyz``) when it consumes: the poll loop runs (a fetch returned lately;
  it does not while partitions are being restored or drained in a rebalance), the
  cluster answers (or has been unreachable for less than
  ``broker_down_not_ready_seconds``), and its group membership is stable (librdkafka's
  statistics: group ``up`` and ``steady``). The reason says which is missing.

The probes run on the HTTP server's thread and only read what the loop and librdkafka's
callbacks recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from pipeline.observability.kafka_logs import ClusterConnection

Verdict = tuple[bool, str]


class CallThread(Protocol):
    """A thread making blocking Kafka calls (``pipeline.runtime.kafka_thread``)."""

    name: str

    @property
    def blocked_for(self) -> float: ...

    @property
    def in_runtime_callback(self) -> bool: ...


STUCK_LOOP_SECONDS = 60.0
FETCH_GAP_SECONDS = 10.0
TICK_SECONDS = 1.0


class ConsumerProbes:
    """What ``/healthz`` and ``/readyz`` of a consumer service say, and why."""

    def __init__(
        self,
        connection: ClusterConnection,
        *,
        down_limit: float,
        fatal: Callable[[], BaseException | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        stuck_limit: float = 120.0,
    ) -> None:
        self.connection = connection
        self.down_limit = down_limit
        self.fatal = fatal
        self.clock = clock
        self.stuck_limit = stuck_limit
        self.threads: list[CallThread] = []
        self.consuming = False
        now = clock()
        self.last_tick = now
        self.last_fetch = now

    def watch(self, thread: CallThread) -> None:
        """Count ``thread``'s calls in liveness (the consumer thread, the transaction one)."""
        self.threads.append(thread)

    def stalled_for(self) -> float:
        """Seconds since the poll loop last fetched, while it should be fetching (0 while
        not consuming, or while the runtime's own rebalance callback holds the consumer
        thread: draining, restoring state)."""
        if not self.consuming or any(t.in_runtime_callback for t in self.threads):
            return 0.0
        return max(0.0, self.clock() - self.last_fetch)

    # ------------------------------------------------------------------ from the loop

    def fetched(self, records: int) -> None:
        """A fetch returned (``records`` of them: proof the cluster answers)."""
        self.last_fetch = self.last_tick = self.clock()
        self.consuming = True
        if records:
            self.connection.up()

    async def tick(self) -> None:
        """Runs on the event loop until cancelled; a stuck loop stops ticking."""
        while True:
            self.last_tick = self.clock()
            await asyncio.sleep(TICK_SECONDS)

    # ------------------------------------------------------------------ the probes

    def healthy(self) -> Verdict:
        fatal = self.fatal()
        if fatal is not None:
            return False, f"stopped on {type(fatal).__name__}: {fatal}"
        stuck = self.clock() - self.last_tick
        if stuck > STUCK_LOOP_SECONDS:
            return False, f"event loop stuck for {stuck:.0f}s"
        for thread in self.threads:
            blocked = thread.blocked_for
            if blocked > self.stuck_limit:
                return False, f"a Kafka call on {thread.name} has not returned for {blocked:.0f}s"
        stalled = self.stalled_for()
        if stalled > self.stuck_limit:
            return False, f"the poll loop has not fetched for {stalled:.0f}s"
        return True, "event loop running"

    def ready(self) -> Verdict:
        healthy, reason = self.healthy()
        if not healthy:
            return False, reason
        if not self.consuming:
            return False, "not consuming (starting or shutting down)"
        gap = self.clock() - self.last_fetch
        if gap > FETCH_GAP_SECONDS:
            return False, f"no fetch for {gap:.0f}s: rebalancing or restoring assigned partitions"
        down = self.connection.down_for
        servers = self.connection.bootstrap_servers
        if down > self.down_limit:
            return False, f"Kafka at {servers} unreachable for {down:.0f}s"
        if down:
            # A short outage: the group's state says nothing yet, librdkafka retries.
            return True, f"Kafka at {servers} unreachable for {down:.0f}s, retrying"
        group = self.connection.group
        if group is None:
            return False, "joining the consumer group (no group state yet)"
        if not group.stable:
            return False, f"consumer group not stable: {group.describe()}"
        return True, f"consuming: {group.describe()}"

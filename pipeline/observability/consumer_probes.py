"""Liveness and readiness of a consumer service, as ``/healthz`` and ``/readyz`` answer them.

- Live (``/healthz``) unless the service stopped on an error or its event loop is stuck:
  a restart helps then, and only then. A broker outage or a long state restore is no
  reason to kill the process.
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

from pipeline.observability.kafka_logs import ClusterConnection

Verdict = tuple[bool, str]

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
    ) -> None:
        self.connection = connection
        self.down_limit = down_limit
        self.fatal = fatal
        self.clock = clock
        self.consuming = False
        now = clock()
        self.last_tick = now
        self.last_fetch = now

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

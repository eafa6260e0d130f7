"""Per-conversation lanes and the worker pool that empties them.

Fetched records queue in one lane per key (conversation). A fixed pool of workers takes
lanes that have work and no worker, and handles a lane's records one after another: one
conversation strictly in order, up to the pool's size of conversations at once, and no
task created per record. Each handler runs inside a worker task, so ``asyncio.timeout``
and cancel scopes behave as usual.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from pipeline.runtime.processing import Work
from pipeline.runtime.run_state import RunState

WORKER_STREAK = 64  # records a worker handles before it lets other tasks run


class Lanes:
    """Queues records by key and runs them through ``process`` on a pool of workers.

    ``process(work)`` returns False when it abandoned the record (shutdown during a
    retry's backoff); the lane then gives the record's in-progress count back.
    """

    def __init__(self, state: RunState, process: Callable[[Work], Awaitable[bool]]) -> None:
        self.state = state
        self.process = process
        self.lanes: dict[bytes, deque[Work]] = {}  # every key with queued or running work
        self.ready: deque[bytes] = deque()  # lanes with queued work and no worker
        self.idle: deque[asyncio.Future[None]] = deque()  # workers waiting for a lane
        self.busy = 0  # records being handled now
        self.waking = 0  # workers woken that have not run yet
        self.workers: list[asyncio.Task[None]] = []

    def start(self, count: int, name: str) -> None:
        """Start ``count`` workers on the running loop."""
        self.loop = asyncio.get_running_loop()
        self.workers = [
            asyncio.create_task(self._work(), name=f"{name}-worker-{i}") for i in range(count)
        ]
        for worker in self.workers:
            worker.add_done_callback(self._worker_done)

    async def stop(self) -> None:
        """Cancel the workers (a record being handled is abandoned)."""
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)

    def __len__(self) -> int:
        """Keys with queued or running work."""
        return len(self.lanes)

    def add(self, lane_key: bytes, work: Work) -> None:
        """Queue a record behind its key's earlier ones."""
        lane = self.lanes.get(lane_key)
        if lane is not None:
            lane.append(work)
            return
        self.lanes[lane_key] = deque((work,))
        self.ready.append(lane_key)
        if not self.waking:
            self._wake_one()

    def _wake_one(self) -> None:
        """Wake an idle worker, unless all are busy.

        One worker is woken at a time: it wakes the next when it takes a lane and others
        are still waiting, so handlers that never wait are run by one worker in one go,
        and handlers that do wait get a worker per lane, one after another.
        """
        while self.idle:
            waiter = self.idle.popleft()
            if not waiter.done():  # a worker cancelled while waiting leaves a done one
                waiter.set_result(None)
                self.waking += 1
                return

    async def _work(self) -> None:
        """One worker: take a lane with work, handle its records in order, repeat."""
        ready, lanes, closing, process = self.ready, self.lanes, self.state.closing, self.process
        streak = 0
        while True:
            if not ready:
                waiter = self.loop.create_future()
                self.idle.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter.done() and not waiter.cancelled():
                        self.waking -= 1
                continue
            lane_key = ready.popleft()
            lane = lanes[lane_key]
            if ready and not self.waking:
                self._wake_one()
            try:
                while lane:
                    work = lane.popleft()
                    if work.part.revoked or closing.is_set():
                        continue  # handed back: the next owner reads it from the commit
                    work.part.in_progress += 1
                    self.busy += 1
                    try:
                        done = await process(work)
                    finally:
                        self.busy -= 1
                    if not done:
                        work.part.in_progress -= 1
                    streak += 1
                    if streak >= WORKER_STREAK:
                        # Handlers that never wait would otherwise hold the loop.
                        streak = 0
                        await asyncio.sleep(0)
            finally:
                del lanes[lane_key]

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # A bug in the runtime itself: stop rather than leave an offset stuck forever.
            self.state.fail(task.exception() or RuntimeError("worker failed"))

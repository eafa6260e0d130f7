"""Recently accepted event ids: a provider retry is answered without producing again.

The ids are deterministic (derived from the provider's ids), so the same delivery has
the same id. An id enters the window only once the broker acknowledged its event: a
retry after a 503 produces. A retry arriving while the first attempt is still waiting
for its acknowledgement waits for that outcome instead of producing in parallel.
The window is per process and bounded, a courtesy that spares the broker a record; the
durable check is downstream, by the same event id: the agent keeps the ids of recent
messages per conversation, and the webhooks service records every webhook delivery it
handled in a compacted topic, so a replay through another replica or after a restart
produces no second context_updated.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable


class RecentIds:
    """A bounded LRU of acknowledged ids plus the ids being produced right now."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._done: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._pending: dict[uuid.UUID, asyncio.Future[bool]] = {}

    def __contains__(self, event_id: uuid.UUID) -> bool:
        return event_id in self._done

    def __len__(self) -> int:
        return len(self._done)

    async def once(self, event_id: uuid.UUID, produce: Callable[[], Awaitable[None]]) -> bool:
        """Run ``produce`` unless ``event_id`` was acknowledged; True when it ran now."""
        while True:
            if event_id in self._done:
                self._done.move_to_end(event_id)
                return False
            pending = self._pending.get(event_id)
            if pending is None:
                break
            # Another request is producing this id: its outcome decides; on failure retry.
            if await asyncio.shield(pending):
                return False
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[event_id] = outcome
        acknowledged = False
        try:
            await produce()
            acknowledged = True
            self._remember(event_id)
        finally:
            del self._pending[event_id]
            outcome.set_result(acknowledged)
        return True

    def _remember(self, event_id: uuid.UUID) -> None:
        self._done[event_id] = None
        while len(self._done) > self.capacity:
            self._done.popitem(last=False)

"""What a running service's own parts may ask of its runtime: :class:`Running`.

The runner sets ``service.running`` when it starts and clears it when it stops. Parts
that keep a journal of outside calls (:mod:`pipeline.journal`) need two things the
handler's context does not give:

- a publisher whose records survive an aborted transaction (:attr:`Running.durable`): in
  exactly-once mode a producer of its own outside the transaction, since a model's answer
  or a tool's side effect happened whether or not the transaction that followed commits;
  in at-least-once mode the runtime's publisher;
- the offsets confirmed committed (:meth:`Running.committed`): an event at or past them
  may be handled again after a crash, one below them never will be, so what was recorded
  for it is no longer needed.
"""

from __future__ import annotations

from pipeline.runtime.offset_tracker import PartitionOffsets
from pipeline.runtime.publisher import Publisher

TP = tuple[str, int]


class Running:
    """The runtime of a service while it runs."""

    def __init__(self, partitions: dict[TP, PartitionOffsets], durable: Publisher) -> None:
        self._partitions = partitions
        self.durable = durable

    def committed(self, topic: str, partition: int) -> int | None:
        """The offset the broker confirmed committed for an assigned partition (the next
        one to read), or None when it is not assigned here or nothing is known yet."""
        part = self._partitions.get((topic, partition))
        return None if part is None else part.durable

    def owns(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self._partitions

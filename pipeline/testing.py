"""Run a Service's handlers in memory, through the real runtime, from a test.

:class:`TestService` wires the runtime's ports (:mod:`pipeline.runtime.ports`) to an
in-memory broker (:mod:`pipeline.runtime.memory_broker`, its clients in
:mod:`pipeline.runtime.memory_transport`) and runs the service with its real lanes,
retries, dead letters, backpressure and commits; only Kafka is replaced. Feed it events,
await what the handlers emit and what they dead-letter, and inspect what would be
committed. A state store attached to the service (:class:`~pipeline.state.ChangelogStore`)
restores from the memory broker's changelog topic, not from Kafka::

    from pipeline.testing import TestService

    async def test_echo() -> None:
        async with TestService(service) as svc:
            await svc.send("message_received", {...}, conversation_id="c1")
            reply = await svc.next_output("response_ready")
        assert reply["text"] == "hi"

Topics get their partition counts from the topic definitions, and keys are placed with
Kafka's murmur2 partitioner, so a conversation lands where it would on a real broker.
With ``processing_guarantee="exactly_once"`` the broker keeps transactions (open records
held back from read_committed readers, aborted ones skipped, fencing by transactional
id), and the outputs a test sees are the committed ones.
"""

from __future__ import annotations

from pipeline.in_memory import InMemoryService, state_stores
from pipeline.runtime.memory_broker import MemoryBroker, MemoryRecord, MemoryTransaction
from pipeline.runtime.memory_transport import MemoryTransactionalProducer, MemoryTransport

__all__ = [
    "MemoryBroker",
    "MemoryRecord",
    "MemoryTransaction",
    "MemoryTransactionalProducer",
    "MemoryTransport",
    "TestService",
    "state_stores",
]


class TestService(InMemoryService):
    """Run ``service`` in memory while the ``async with`` block lasts.

    ``overrides`` replace settings for the run (``max_retries=1``,
    ``max_buffered_per_partition=4``, ...); by default the health endpoint is off and
    retries back off for milliseconds. Leaving the block shuts the service down as
    SIGTERM would (drain, commit, close) and raises what stopped it, if anything did.
    Pass the ``broker`` of an earlier run to start where it committed, as a restarted
    or rebalanced service would. The runtime's metrics of each run go to a fresh
    ``registry`` (the service's own metrics stay in ``service.registry``), so one service
    can be run by many tests.
    """

    __test__ = False  # not a pytest test class

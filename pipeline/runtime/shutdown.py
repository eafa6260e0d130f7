"""A runner's stop: drain in-flight work, commit, close, all within the drain deadline.

Whatever the client does: in-flight work gets the deadline less a reserve for the final
commit and the close, and a Kafka call still running at its share of the deadline is
left behind (its thread is a daemon), so the process can exit and its supervisor start
a fresh one; what was not committed is handled again by the next owner.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.runtime.runner import Runner

log = logging.getLogger("pipeline.runtime")

# Of the drain deadline at shutdown, what in-flight work leaves to the commit and the close
# (at most this much, at most a quarter); each of those gets at least CLOSE_SECONDS.
CLOSE_RESERVE_SECONDS = 5.0
CLOSE_SECONDS = 1.0


async def shut_down(runner: Runner, background: Sequence[asyncio.Task[None]] = ()) -> None:
    """Stop fetching, hand back unstarted work, drain started work, commit, close: all
    within the drain deadline, whatever the client does.

    In-flight work gets the deadline less a reserve for the commit and the close; the
    ``background`` tasks (which own the clients handlers use) are cancelled once it is
    done; a Kafka call still running at its share of the deadline is left behind (its
    thread is a daemon), so the process can exit and be restarted.
    """
    state = runner.state
    state.closing.set()
    drain = runner.settings.drain_timeout_seconds
    deadline = (runner.stop_seen or time.monotonic()) + drain
    work_deadline = deadline - min(CLOSE_RESERVE_SECONDS, drain / 4)
    # Workers skip queued records once closing is set and finish the ones they hold.
    while runner.lanes and state.fatal is None and _left(work_deadline):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    if runner.lanes:
        log.warning(
            "%d conversations still busy at the drain deadline; their "
            "events will be handled again after restart",
            len(runner.lanes),
        )
    await runner.lanes.stop()
    # Only now the background tasks: what handlers used (a model's client, a channel's)
    # closes after the last handler finished, not while one still calls it.
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await runner.producer.flush(_left(work_deadline))
    # Acknowledgements reach the loop in batches; polling beats an event set per record.
    while runner.processor.unacked and state.fatal is None and _left(work_deadline):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    commit_by = max(_left(deadline) - CLOSE_SECONDS, CLOSE_SECONDS)
    if runner.committer.transaction is not None:
        if state.fatal is None:
            parts = list(runner.partitions.values())
            await bounded(
                runner.on_consumer_thread(runner.committer.commit_transaction, parts),
                commit_by,
                "the final commit",
            )
    else:
        parts_now = runner.partitions.values()
        offsets = [tp for _, tp in runner.committer.take(parts_now, force=True)]
        if offsets and state.fatal is None:
            await bounded(
                runner.on_consumer_thread(runner.committer.commit_sync, offsets),
                commit_by,
                "the final commit",
            )
    await bounded(
        runner.on_consumer_thread(runner.consumer.close),
        max(_left(deadline), CLOSE_SECONDS),
        "closing the consumer",
    )
    release_threads(runner)
    remaining = await runner.producer.aclose(min(5.0, max(_left(deadline), 1.0)))
    if runner.durable_producer is not None:
        remaining += await runner.durable_producer.aclose(min(5.0, max(_left(deadline), 1.0)))
    if remaining:
        log.error("%d produced records were not acknowledged at close", remaining)
    runner.processor.flush_counts()
    log.info("service %s stopped", runner.name)


def release_threads(runner: Runner) -> None:
    """Let the client threads end (one stuck in a call is left behind, a daemon)."""
    runner.poller.shutdown(wait=True)
    if runner.transaction_thread is not None:
        runner.transaction_thread.shutdown(wait=True)


async def bounded(call: Awaitable[Any], seconds: float, what: str) -> None:
    """Await a consumer-thread call for at most ``seconds``; past that, leave it."""
    try:
        await asyncio.wait_for(call, seconds)
    except TimeoutError:
        log.error(
            "%s did not finish within %.0fs: the Kafka client is stuck; leaving it "
            "behind (nothing more is committed, the next owner handles what this one "
            "did not commit)",
            what,
            seconds,
        )


async def close_unstarted(runner: Runner) -> None:
    """Stopped before transactions could start: release the clients, commit nothing."""
    log.info("service %s stopped before it could start", runner.name)
    await bounded(runner.on_consumer_thread(runner.consumer.close), 5.0, "closing")
    release_threads(runner)
    await runner.producer.aclose(0.0)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())

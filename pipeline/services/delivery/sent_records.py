"""Writing the sent store: each send's attempt before it goes out, its answer after.

:class:`SentRecords` keeps the :class:`~pipeline.services.delivery.sent_store.SentStore` of
the partitions this instance owns, restored from its compacted topic on assignment and
dropped on revocation, and writes each entry to that topic: an attempt awaited (through
the runtime's publisher, acknowledged before the send), a refusal or failure likewise, a
``sent`` with the handler's outputs. An entry is remembered once written, and only for a
partition still owned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pipeline.errors import PipelineError
from pipeline.events.model import Event, to_millis
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Service
from pipeline.services.delivery.sent_store import (
    ATTEMPTED,
    SentEntry,
    SentStore,
    encode_entry,
    read_changelog,
)

log = logging.getLogger("pipeline.delivery")


class SentRecords:
    """The sent store of the owned partitions, and the writes to its topic."""

    def __init__(self, service: Service, publisher: Callable[[], Publisher | None]) -> None:
        self.settings = service.settings
        self.section = service.settings.delivery
        self.name = service.name
        self.store = SentStore(self.section.sent_ids_per_conversation)
        # Partitions this instance owns; None until the runtime assigns any (in tests).
        self.owned: set[int] | None = None
        self._publisher = publisher

    def owns(self, partition: int) -> bool:
        """Whether ``partition`` is (still) this instance's; any is, before an assignment."""
        return self.owned is None or partition in self.owned

    @staticmethod
    def entry(
        event: Event,
        state: str,
        attempt: int,
        *,
        provider_id: str | None = None,
        error: str | None = None,
    ) -> SentEntry:
        """Where the response ``event`` stands now: ``state`` after attempt ``attempt``."""
        return SentEntry(
            str(event.id),
            str(event["reply_to"]["channel"]),
            attempt,
            provider_id,
            to_millis(datetime.now(UTC)),
            state,
            error,
        )

    def record_with_outputs(self, ctx: Context, event: Event, entry: SentEntry) -> None:
        """Write ``entry`` with the handler's outputs, beside its status, not awaited.

        For a ``sent`` answer: the response's offset commits only once both are
        acknowledged, so a crash before then finds the attempt without an answer, as a
        crash before an awaited write of it would; the next record of the conversation
        (the next response's attempt) goes out through the same producer after it, so
        the compacted topic keeps the newer value.
        """
        partition, conversation = ctx.partition, event.conversation_id
        encoded = encode_entry(entry)
        value = self.store.value_with(partition, conversation, entry, encoded)
        ctx.emit_record(self.section.sent_topic, conversation, value, kind="delivery_sent")
        if self.owns(partition):
            self.store.record(partition, conversation, entry, encoded)

    async def record(self, ctx: Context, event: Event, entry: SentEntry) -> None:
        """Write ``entry`` to the sent store's topic and wait for the broker's ack.

        An attempt that cannot be recorded is not made (the error fails the handler, which
        the runtime retries). An answer that cannot be recorded at once goes out with the
        handler's outputs, still before the response's offset commits.
        """
        partition, conversation = ctx.partition, event.conversation_id
        encoded = encode_entry(entry)
        value = self.store.value_with(partition, conversation, entry, encoded)
        publisher = self._publisher()
        if publisher is not None:
            try:
                await publisher.publish_record(self.section.sent_topic, conversation, value)
            except PipelineError as exc:
                if entry.state == ATTEMPTED:
                    raise
                log.warning("sent store record written with the outputs instead: %s", exc)
                ctx.emit_record(self.section.sent_topic, conversation, value, kind="delivery_sent")
        else:
            ctx.emit_record(self.section.sent_topic, conversation, value, kind="delivery_sent")
        if self.owns(partition):
            # (A partition revoked meanwhile is not remembered here again.)
            self.store.record(partition, conversation, entry, encoded)

    async def restore(self, partitions: list[tuple[str, int]]) -> None:
        """Read what was sent for the assigned partitions before handling any of them."""
        numbers = sorted({p for _, p in partitions})
        if not numbers:
            return
        changelog = self.settings.topic(self.section.sent_topic)
        started = time.monotonic()
        values = await asyncio.to_thread(
            read_changelog,
            {
                **self.settings.consumer_config(),
                "group.id": f"{self.settings.topic_prefix}{self.name}-restore",
                "client.id": f"{self.name}-restore",
            },
            changelog,
            self.settings.topic("response_ready"),
            numbers,
            self.section.restore_timeout_seconds,
        )
        for partition, by_conversation in values.items():
            self.store.load(partition, by_conversation)
        self.owned = (self.owned or set()) | set(numbers)
        log.info(
            "restored %d conversations' sent responses of %s%s in %.2fs",
            sum(len(v) for v in values.values()),
            changelog,
            numbers,
            time.monotonic() - started,
        )

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        """Drop the revoked partitions' entries; they are no longer owned."""
        gone = {p for _, p in partitions}
        self.store.drop(gone)
        self.owned = (self.owned or set()) - gone

"""Delivery's journal: each send's attempt recorded before it goes out, its answer after.

:class:`SentRecords` is a :class:`~pipeline.journal.Journal` on ``delivery.sent_topic``
with what delivery adds to it:

- a response may arrive again long after it was committed (the agent in at-least-once
  mode can write the same ``response_ready``, with the same event id, twice at different
  offsets; a dead letter can be redriven), so steps are not expired on commit: each
  conversation keeps its newest ``delivery.sent_ids_per_conversation``;
- the values of the sent store the journal replaced on that topic are read
  (:func:`~pipeline.services.delivery.sent_store.upgrade`);
- the topic's co-partitioning with ``response_ready`` is checked before it is restored
  (a ConfigError stops the service rather than let it guess what was sent);
- where a response stands is told in delivery's words
  (:class:`~pipeline.services.delivery.sent_store.SentEntry`);
- the partitions this instance owns, so that a handler whose partition was revoked while
  it waited hands its response back.

Every record is written at once, awaited, through the runtime's durable publisher: in
exactly-once mode outside the transaction, so a send recorded is known after a crash
and an aborted transaction as it is in at-least-once mode.
"""

from __future__ import annotations

from pipeline.journal import Journal, Step
from pipeline.runtime.context import Context
from pipeline.runtime.service import Service
from pipeline.services.delivery.sent_store import (
    SEND,
    SentEntry,
    answer,
    check_copartitioned,
    entry_of,
    send_step_id,
    upgrade,
)
from pipeline.state.changelog import Restored
from pipeline.state.store import Reader


class SentRecords:
    """Delivery's journal of sends, and the partitions this instance owns."""

    def __init__(self, service: Service) -> None:
        self.settings = service.settings
        self.section = service.settings.delivery
        self.journal = Journal(
            service,
            self.section.sent_topic,
            keep=self.section.sent_ids_per_conversation,
            expire_committed=False,
            upgrade=upgrade,
        )
        store = self.journal.store
        store.restore_timeout_seconds = self.section.restore_timeout_seconds
        # The check runs where the store reads Kafka; a store restored from elsewhere
        # (pipeline.testing replaces its reader) has no topic to check.
        store._read = self._checked(store._read)
        # Partitions this instance owns; None until the runtime assigns any (in tests).
        self.owned: set[int] | None = None

    def owns(self, partition: int) -> bool:
        """Whether ``partition`` is (still) this instance's; any is, before an assignment."""
        return self.owned is None or partition in self.owned

    # ------------------------------------------------------------------ reading

    def find(self, ctx: Context) -> Step | None:
        """The send step of the handled response, if one was recorded."""
        return self.journal.find(ctx, send_step_id(ctx.event.id))

    def get(self, partition: int, conversation_id: str, response_id: str) -> SentEntry | None:
        """Where ``response_id`` stands, if its partition is owned here and it was
        attempted or sent."""
        if not self.owns(partition) or partition not in self.journal.store.partitions:
            return None
        wanted = send_step_id(response_id)
        for step in self.journal.steps(partition, conversation_id):
            if step.id == wanted:
                return entry_of(step)
        return None

    # ------------------------------------------------------------------ writing

    async def attempt(self, ctx: Context, attempt: int) -> Step:
        """Record that attempt ``attempt`` of the handled response is about to go out.

        An attempt that cannot be recorded is not made: the error fails the handler,
        which the runtime retries."""
        response_id = str(ctx.event.id)
        return await self.journal.intent(
            ctx, send_step_id(response_id), SEND, key=response_id, attempt=attempt
        )

    async def answered(
        self,
        ctx: Context,
        step: Step,
        state: str,
        *,
        provider_id: str | None = None,
        error: str | None = None,
    ) -> Step:
        """Record the channel's answer to ``step``'s attempt: ``sent``, ``refused`` or
        ``failed``. One that cannot be recorded fails the handler; handled again, the
        attempt is uncertain and resolved as its channel allows."""
        result = answer(state, provider_id=provider_id, error=error)
        return await self.journal.done(ctx, step, result)

    async def unconfirmed(self, ctx: Context, step: Step, reason: str) -> Step:
        """Record that ``step``'s uncertain attempt is not repeated (at most once)."""
        return await self.journal.unknown(ctx, step, reason)

    def count(self, outcome: str) -> None:
        """Count a send in ``pipeline_journal_steps_total`` (called, repeated, reused,
        unknown)."""
        self.journal.count(SEND, outcome)

    # ------------------------------------------------------------------ partitions

    async def restore(self, partitions: list[tuple[str, int]]) -> None:
        """The assigned partitions are this instance's (the journal restores them)."""
        self.owned = (self.owned or set()) | {p for _, p in partitions}

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        """The revoked partitions are no longer this instance's."""
        self.owned = (self.owned or set()) - {p for _, p in partitions}

    def _checked(self, read: Reader) -> Reader:
        changelog = self.settings.topic(self.section.sent_topic)
        source = self.settings.topic("response_ready")
        config = {
            **self.settings.consumer_config(),
            "group.id": f"{self.settings.topic_prefix}{self.journal.service.name}-restore",
        }

        def read_checked(topics: list[str], starts: dict[int, int | None]) -> dict[int, Restored]:
            check_copartitioned(config, changelog, source)
            return read(topics, starts)

        return read_checked

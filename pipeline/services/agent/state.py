"""The agent's conversation state: read at the start of each handler, written last.

The agent is the single writer of the conversations it owns. A conversation belongs to
the tenant its id implies by the channels' settings
(:class:`~pipeline.channels.tenancy.ChannelOwners`: ``web:<tenant>:``,
``email:<tenant>:``, the tenant of a Slack workspace or of a WhatsApp number), else, for
an id of no channel, to the tenant of its first event. :meth:`AgentState.load` refuses
an event of another tenant, even as a conversation's first event
(:class:`~pipeline.errors.RejectEvent`, so it is dead-lettered with the reason), before
anything of it is read into a turn. Each write also updates the open handoffs and
pending approvals counted by :class:`~pipeline.services.agent.metrics.OpenWork`.
"""

from __future__ import annotations

import logging

from pipeline.channels.tenancy import ChannelOwners
from pipeline.errors import RejectEvent
from pipeline.runtime.context import Context
from pipeline.services.agent.conversation import Conversation
from pipeline.services.agent.metrics import AgentMetrics, OpenWork
from pipeline.state import ChangelogStore

log = logging.getLogger(__name__)


class AgentState:
    """The conversations in ``store`` (one per key, as JSON), read and written by handlers."""

    def __init__(
        self, store: ChangelogStore, metrics: AgentMetrics, owners: ChannelOwners | None = None
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.owners = owners if owners is not None else ChannelOwners()
        self.open_work = OpenWork(metrics)

    def load(self, ctx: Context, *, existing: bool = False) -> Conversation:
        """The event's conversation; RejectEvent when it belongs to another tenant, or
        (``existing``) when the agent does not have it."""
        event = ctx.event
        stored = self.store.get(ctx, event.conversation_id)
        if existing and stored is None:
            raise RejectEvent(
                f"{event.type} names conversation {event.conversation_id!r}, which the agent "
                "does not have; refused"
            )
        conversation = Conversation.from_json(stored)
        tenant = event.metadata.tenant_id
        implied = self.owners.owner(event.conversation_id)
        if implied is not None and conversation.tenant not in (None, implied):
            # Stored by a version that let the first event's tenant own any conversation.
            log.warning(
                "conversation %r was stored as tenant %r's; its id says tenant %r's",
                event.conversation_id,
                conversation.tenant,
                implied,
            )
            conversation.tenant = implied
        owner = implied or conversation.tenant
        if owner is not None and owner != tenant:
            self.metrics.refused_tenant.inc()
            log.warning(
                "refusing %s %s of tenant %r: conversation %r belongs to tenant %r",
                event.type,
                event.id,
                tenant,
                event.conversation_id,
                owner,
            )
            raise RejectEvent(
                f"conversation {event.conversation_id!r} belongs to tenant "
                f"{owner!r}, not to the event's tenant {tenant!r}; refused"
            )
        conversation.tenant = tenant
        return conversation

    def save(self, ctx: Context, conversation: Conversation) -> None:
        """Write ``conversation`` to the changelog with the handler's outputs."""
        state = conversation.to_json()
        self.store.put(ctx, ctx.event.conversation_id, state)
        self.open_work.track(ctx.event.conversation_id, state)

    async def recount(self, _: list[tuple[str, int]]) -> None:
        """Recount open handoffs and approvals after a rebalance (after the restore)."""
        self.open_work.recount(
            (key, value) for p in self.store.partitions for key, value in self.store.items(p)
        )

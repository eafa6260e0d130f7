"""An agent whose handlers a test calls directly, as the runtime would, and the events
it feeds them."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.config import Settings, bundled_dir
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.context import Context
from pipeline.services.agent import assemble
from pipeline.state.changelog import Restored
from pipeline.toolbox import builtin_tools
from pipeline.toolbox.tool_offer import StaticOffer

SERDE = SingleObjectSerde(SchemaCatalog.load(bundled_dir("schemas")))
ADDRESS = {"channel": "web", "address": "http://127.0.0.1/cb", "thread_id": None}


def empty_changelog(topics: list[str], starts: dict[int, int | None]) -> dict[int, Restored]:
    return {p: Restored(p, 0, 0, True) for p in starts}


class Harness:
    """An agent with an in-memory changelog; ``send`` runs a handler like the runtime."""

    def __init__(
        self,
        provider: Any = None,
        attempt: int = 1,
        gateway: Mapping[str, Any] | None = None,
        llm: Mapping[str, Any] | None = None,
        **agent: Any,
    ) -> None:
        settings = Settings(
            metrics_port=0, agent=agent, gateway=gateway or {}, llm=llm or {}, max_retries=2
        )
        self.registry = CollectorRegistry()
        # The offer the tools service makes by default: its built-ins, as it advertises them.
        offer = StaticOffer.of(builtin_tools(settings.tools))
        service, self.agent = assemble(
            settings, provider=provider, registry=self.registry, tools=offer
        )
        self.service = service
        self.agent.store._read = empty_changelog
        self.journal = self.agent.model.journal
        if self.journal is not None:
            self.journal.store._read = empty_changelog
        self.attempt = attempt
        self.handlers = {h.event_type: h.fn for h in service.handlers}

    async def start(self) -> Harness:
        await self.agent.store.assigned([("message_received", 0)])
        if self.journal is not None:
            await self.journal.store.assigned([("message_received", 0)])
        return self

    async def send(self, event: Event, attempt: int | None = None) -> list[Event]:
        ctx = Context(
            event,
            service="agent",
            attempt=attempt or self.attempt,
            serde=SERDE,
            topic_for=lambda name: name,
            traceparent=None,
            logger=logging.getLogger("test"),
            partition=0,
        )
        await self.handlers[event.type](event, ctx)
        self.last_records = [o for o in ctx.outgoing if o.event is None]
        return [o.event for o in ctx.outgoing if o.event is not None]

    def state(self, conversation: str = "c1") -> dict[str, Any]:
        value = self.agent.store.lookup(0, conversation)
        assert value is not None
        return value


def message(text: str, conversation: str = "c1", external_id: str | None = "m1") -> Event:
    metadata = Metadata.new("message_received", conversation, tenant_id="t1", producer="gateway")
    return Event(
        metadata,
        {
            "channel": "web",
            "sender_id": "u1",
            "sender_name": None,
            "text": text,
            "reply_to": ADDRESS,
            "external_id": external_id,
            "attachments": [],
            "attributes": {},
        },
    )


def tool_result(called: Event, result: Mapping[str, Any] | None, status: str = "ok") -> Event:
    """What the tools service answers to ``called``."""
    metadata = called.metadata.caused("tool_result", producer="tools")
    return Event(
        metadata,
        {
            "call_id": called["call_id"],
            "tool": called["tool"],
            "status": status,
            "result_json": json.dumps(result) if result is not None else None,
            "error": None if status == "ok" else "it broke",
            "duration_ms": 3,
        },
    )


def timer_fired(requested: Event) -> Event:
    metadata = requested.metadata.caused("timer_fired", producer="scheduler")
    return Event(
        metadata,
        {
            "timer_id": requested["timer_id"],
            "purpose": requested["purpose"],
            "due_at": requested["due_at"],
            "payload_json": None,
        },
    )


def context_updated(facts: dict[str, str], proactive: str | None = None) -> Event:
    metadata = Metadata.new("context_updated", "c1", tenant_id="t1", producer="webhooks")
    return Event(metadata, {"source": "crm", "facts": facts, "proactive_message": proactive})

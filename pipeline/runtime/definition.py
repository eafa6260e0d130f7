"""What a service declares: its name and settings, a handler per event type, the hooks
on partitions arriving and leaving, background tasks and the types it emits.

:class:`ServiceDefinition` is what the runner runs; :class:`pipeline.runtime.service.Service`
adds the running to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.runtime.context import Context

if TYPE_CHECKING:
    from pipeline.runtime.publisher import Publisher

Handler = Callable[[Event, Context], Awaitable[None]]
PartitionsHook = Callable[[list[tuple[str, int]]], Awaitable[None]]
Background = Callable[["Publisher"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    event_type: str
    name: str
    fn: Handler


class ServiceDefinition:
    """Handlers, hooks and background tasks declared on a service, and its settings."""

    def __init__(
        self,
        name: str,
        *,
        settings: Settings | None = None,
        registry: CollectorRegistry | None = None,
        assignment_strategy: str | None = None,
        emits: Iterable[str] | None = None,
        producer_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        """``emits`` declares the event types the handlers emit: each is checked against
        the schemas and topics at start-up, and ``ctx.emit`` of any other type
        dead-letters the event at once. Without it, any known type may be emitted.

        ``assignment_strategy="range"`` co-partitions the subscribed topics: partition
        N of every topic goes to the same instance, which state stores rely on.

        ``producer_defaults`` replaces some of the runtime's producer defaults
        (:data:`pipeline.runtime.producer.PRODUCER_DEFAULTS`) for this service, e.g.
        ``{"linger.ms": 0}`` for one that waits for each record's acknowledgement;
        ``PIPELINE_PRODUCER__*`` settings still override them."""
        self.settings = settings or Settings()
        self.name = self.settings.service_name or name
        self.registry = registry if registry is not None else CollectorRegistry()
        self.assignment_strategy = assignment_strategy or self.settings.assignment_strategy
        self.emits = None if emits is None else tuple(emits)
        self.producer_defaults = dict(producer_defaults or {})
        self._handlers: dict[str, HandlerSpec] = {}
        self.assigned_hooks: list[PartitionsHook] = []
        self.revoked_hooks: list[PartitionsHook] = []
        self.background_tasks: list[Background] = []

    def handler(self, event_type: str, *, name: str | None = None) -> Callable[[Handler], Handler]:
        """Register an ``async def (event, ctx)`` for one event type (one topic)."""

        def register(fn: Handler) -> Handler:
            if not asyncio.iscoroutinefunction(fn):
                raise TypeError(f"handler {fn!r} must be an async def")
            if event_type in self._handlers:
                raise ValueError(
                    f"{event_type} already has handler {self._handlers[event_type].name!r}"
                )
            self._handlers[event_type] = HandlerSpec(event_type, name or fn.__name__, fn)
            return fn

        return register

    def on_assign(self, hook: PartitionsHook) -> PartitionsHook:
        """Run ``hook(partitions)`` when partitions arrive, before any of their records
        is handled (restore state here)."""
        self.assigned_hooks.append(hook)
        return hook

    def on_revoke(self, hook: PartitionsHook) -> PartitionsHook:
        """Run ``hook(partitions)`` after their in-flight work drained (or they were lost)."""
        self.revoked_hooks.append(hook)
        return hook

    def background(self, task: Background) -> Background:
        """Run ``task(publisher)`` while the service runs; it is cancelled at shutdown."""
        self.background_tasks.append(task)
        return task

    @property
    def handlers(self) -> list[HandlerSpec]:
        return list(self._handlers.values())

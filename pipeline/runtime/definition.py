"""What the runner reads of a service: its handlers, hooks, background tasks and
settings, as :class:`ServiceDefinition`.

:class:`pipeline.runtime.service.Service` is where they are declared; the runner depends
on this shape, not on that class, so ``service.py`` can import the runner that runs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.runtime.context import Context

if TYPE_CHECKING:
    from pipeline.runtime.publisher import Publisher
    from pipeline.runtime.running import Running

Handler = Callable[[Event, Context], Awaitable[None]]
PartitionsHook = Callable[[list[tuple[str, int]]], Awaitable[None]]
Background = Callable[["Publisher"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    event_type: str
    name: str
    fn: Handler


class ServiceDefinition(Protocol):
    """A service as the runner runs it (see :class:`pipeline.runtime.service.Service`)."""

    @property
    def name(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def registry(self) -> CollectorRegistry: ...

    @property
    def assignment_strategy(self) -> str: ...

    @property
    def emits(self) -> tuple[str, ...] | None: ...

    @property
    def producer_defaults(self) -> Mapping[str, Any]: ...

    @property
    def handlers(self) -> list[HandlerSpec]: ...

    @property
    def assigned_hooks(self) -> list[PartitionsHook]: ...

    @property
    def revoked_hooks(self) -> list[PartitionsHook]: ...

    @property
    def background_tasks(self) -> list[Background]: ...

    running: Running | None  # set by the runner while it runs the service

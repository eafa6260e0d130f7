"""A service: named handlers, one per event type, run as one Kafka consumer group.

The runner (:mod:`pipeline.runtime.runner`) reads a service through
:class:`pipeline.runtime.definition.ServiceDefinition`, so it needs nothing from here.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.errors import ConfigError, EventTypeError
from pipeline.observability.otel import start_observability, stop_observability
from pipeline.runtime import event_loop
from pipeline.runtime.definition import Background, Handler, HandlerSpec, PartitionsHook
from pipeline.runtime.kafka_thread import stuck_calls
from pipeline.runtime.ports import Transport
from pipeline.runtime.runner import Runner
from pipeline.runtime.running import Running

__all__ = [
    "GC_YOUNG_THRESHOLD",
    "Background",
    "Handler",
    "HandlerSpec",
    "PartitionsHook",
    "Service",
    "tune_gc",
]

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Garbage-collector settings for a process that runs one service.

    Records in flight keep thousands of short-lived objects alive for a few milliseconds.
    At the default young-generation threshold (700) they set off collections that free
    nothing and promote them, until full collections walk the whole heap; a higher
    threshold lets them die first. Freezing what start-up allocated (modules, schemas,
    settings) keeps it out of every later collection.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), middle, old)


class Service:
    """Declare handlers on a service, then run it::

        service = Service("echo", emits=["response_ready"])

        @service.handler("message_received")
        async def echo(event: Event, ctx: Context) -> None:
            ctx.emit("response_ready", {...})

        service.run_forever()

    The runtime owns polling, ordering per conversation, concurrency, commits, retries,
    dead letters, metrics and shutdown; a handler only handles.
    """

    def __init__(
        self,
        name: str,
        *,
        settings: Settings | None = None,
        registry: CollectorRegistry | None = None,
        assignment_strategy: str | None = None,
        emits: Iterable[str] | None = None,
        producer_defaults: Mapping[str, Any] | None = None,
        max_in_flight: int | None = None,
        transport: Transport | None = None,
    ) -> None:
        """``emits`` declares the event types the handlers emit: each is checked against
        the schemas and topics at start-up, and ``ctx.emit`` of any other type
        dead-letters the event at once. Without it, any known type may be emitted.

        ``assignment_strategy="range"`` co-partitions the subscribed topics: partition
        N of every topic goes to the same instance, which state stores rely on.

        ``producer_defaults`` replaces some of the runtime's producer defaults
        (:data:`pipeline.runtime.producer.PRODUCER_DEFAULTS`) for this service, e.g.
        ``{"linger.ms": 0}`` for one that waits for each record's acknowledgement;
        ``PIPELINE_PRODUCER__*`` settings still override them.

        ``max_in_flight`` replaces the default of ``PIPELINE_MAX_IN_FLIGHT`` (events
        handled at once) for this service, e.g. for one whose handlers mostly wait on a
        model; the setting, when set, still wins.

        ``transport`` makes the consumer and producers (confluent-kafka's by default,
        :mod:`pipeline.runtime.ports`): a wrapper around the default one can inject
        faults into a real process, as the runtime's failure tests do."""
        settings = settings or Settings()
        if max_in_flight is not None and "max_in_flight" not in settings.model_fields_set:
            settings = settings.model_copy(update={"max_in_flight": max_in_flight})
        self.settings = settings
        self.name = self.settings.service_name or name
        self.registry = registry if registry is not None else CollectorRegistry()
        self.assignment_strategy = assignment_strategy or self.settings.assignment_strategy
        self.emits = None if emits is None else tuple(emits)
        self.producer_defaults = dict(producer_defaults or {})
        self.transport = transport
        # The runtime of the service while it runs (see pipeline.runtime.running).
        self.running: Running | None = None
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

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set, then drain, commit and close.

        Raises EventTypeError before consuming when a handled or declared emitted type
        has no schema or no topic definition.
        """
        if not self._handlers:
            raise ValueError(f"service {self.name!r} has no handlers")
        await Runner(self, transport=self.transport).run(stop or asyncio.Event())

    def run_forever(self) -> int:
        """Run until SIGTERM or SIGINT; returns the process exit code."""
        settings = self.settings
        try:
            start_observability(self.name, settings.log_level, settings.log_format)
        except ConfigError as exc:
            log.error("cannot start: %s", exc)
            return 2
        tune_gc()

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await self.run(stop)

        code = 0
        try:
            event_loop.run(main(), settings.event_loop)
        except (EventTypeError, ConfigError) as exc:  # to fix, not a crash: no traceback
            log.error("cannot start: %s", exc)
            code = 2
        except Exception:
            log.exception("service %s stopped on an error", self.name)
            code = 1
        finally:
            stop_observability()
        if stuck_calls():
            # A Kafka call never returned: its thread and the client it holds would keep
            # the interpreter from finishing. Nothing is left to flush or commit.
            log.error("exiting with a Kafka call still stuck in the client")
            logging.shutdown()
            os._exit(code or 1)
        return code

"""A service: named handlers, one per event type, run as one Kafka consumer group.

What it declares is :mod:`pipeline.runtime.definition`, what runs it
:mod:`pipeline.runtime.runner`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from pipeline.errors import ConfigError, EventTypeError
from pipeline.observability.otel import start_observability, stop_observability
from pipeline.runtime.definition import (
    Background,
    Handler,
    HandlerSpec,
    PartitionsHook,
    ServiceDefinition,
)
from pipeline.runtime.runner import Runner

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


class Service(ServiceDefinition):
    """Declare handlers on a service, then run it::

        service = Service("echo", emits=["response_ready"])

        @service.handler("message_received")
        async def echo(event: Event, ctx: Context) -> None:
            ctx.emit("response_ready", {...})

        service.run_forever()

    The runtime owns polling, ordering per conversation, concurrency, commits, retries,
    dead letters, metrics and shutdown; a handler only handles.
    """

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set, then drain, commit and close.

        Raises EventTypeError before consuming when a handled or declared emitted type
        has no schema or no topic definition.
        """
        if not self._handlers:
            raise ValueError(f"service {self.name!r} has no handlers")
        await Runner(self).run(stop or asyncio.Event())

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

        try:
            asyncio.run(main())
        except (EventTypeError, ConfigError) as exc:  # to fix, not a crash: no traceback
            log.error("cannot start: %s", exc)
            return 2
        except Exception:
            log.exception("service %s stopped on an error", self.name)
            return 1
        finally:
            stop_observability()
        return 0

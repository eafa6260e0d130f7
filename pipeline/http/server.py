"""An HTTP service's process: its app under uvicorn, with a graceful stop on SIGTERM.

On SIGTERM (or SIGINT) the server reports not ready at once (``on_exit``), stops
accepting connections, finishes the requests in flight within the drain deadline, then
runs the app's lifespan shutdown; the process exits 0 after a finished drain. Every
connection is held to the limits of :mod:`pipeline.http.connection_limits` (header and
keep-alive timeouts, the connection cap).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from pipeline.config.sections import HttpServerSettings
from pipeline.http.connection_limits import LimitedConfig
from pipeline.observability.health import HealthServer
from pipeline.observability.otel import stop_observability
from pipeline.runtime.event_loop import EventLoopChoice
from pipeline.runtime.event_loop import resolve as resolve_loop

log = logging.getLogger(__name__)


class GracefulServer(uvicorn.Server):
    """uvicorn's server, calling ``on_exit`` (readiness: not ready) as soon as the signal
    arrives."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    @classmethod
    def for_app(
        cls,
        app: ASGIApp,
        *,
        host: str,
        port: int,
        drain_timeout_seconds: float,
        on_exit: Callable[[], None],
        limits: HttpServerSettings | None = None,
        loop: EventLoopChoice = "auto",
    ) -> GracefulServer:
        """``app`` on ``host:port`` with its lifespan, uvicorn's logging and access log off
        (the service logs), ``drain_timeout_seconds`` for the requests in flight, and
        ``limits`` on every connection (default: the settings' defaults), on the event
        ``loop`` the setting names (:mod:`pipeline.runtime.event_loop`)."""
        config = LimitedConfig(
            app,
            limits=limits if limits is not None else HttpServerSettings(),
            host=host,
            port=port,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(drain_timeout_seconds),
            loop=resolve_loop(loop),
        )
        return cls(config, on_exit)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.on_exit()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal after a graceful stop, so the process would die of
        # SIGTERM; a finished drain is a clean exit, and run_forever returns its code.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(server: GracefulServer, health: HealthServer | None, name: str) -> int:
    """Run ``server`` with ``health`` (metrics and probes) beside it until SIGTERM or
    SIGINT, then stop observability; the process exit code."""
    if health is not None:
        health.start()
    try:
        server.run()
    except Exception:
        log.exception("%s stopped on an error", name)
        return 1
    finally:
        if health is not None:
            health.stop()
        stop_observability()
    # uvicorn returns without raising when it cannot bind or the lifespan fails.
    return 0 if server.started else 1

"""The gateway process: the app under uvicorn, with a graceful stop on SIGTERM.

On SIGTERM (or SIGINT) the server stops accepting connections and reports not ready,
finishes the requests in flight (each waits for its acknowledgement) within the drain
deadline, then the lifespan closes the Publisher, which flushes what is queued.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError
from pipeline.observability.health import HealthServer
from pipeline.observability.otel import start_observability, stop_observability
from pipeline.services.gateway.app import Gateway, create_app, docs_routes

log = logging.getLogger(__name__)

# librdkafka settings that bound how long a record may wait for the broker.
_DELIVERY_TIMEOUTS = ("message.timeout.ms", "delivery.timeout.ms")


def gateway_settings(settings: Settings) -> Settings:
    """``settings`` with librdkafka's message timeout set to the publish timeout.

    Without it librdkafka keeps retrying a record for five minutes after the request
    was answered 503, and could store it after all. An explicit setting wins.
    """
    if any(key in settings.producer for key in _DELIVERY_TIMEOUTS):
        return settings
    timeout_ms = str(int(settings.gateway.publish_timeout_seconds * 1000))
    producer = {**settings.producer, "message.timeout.ms": SecretStr(timeout_ms)}
    return settings.model_copy(update={"producer": producer})


class GracefulServer(uvicorn.Server):
    """uvicorn's server, calling ``on_exit`` (readiness: not ready) as soon as the signal
    arrives; the console runs under it too."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

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


class GatewayServer:
    """What ``pipeline run gateway`` runs: ``name`` and ``run_forever()``."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = gateway_settings(settings)
        self.name = self.settings.service_name or "gateway"
        self.registry = registry if registry is not None else CollectorRegistry()
        self.app = create_app(self.settings, registry=self.registry)
        self.gateway: Gateway = self.app.state.gateway
        config = uvicorn.Config(
            self.app,
            host=self.settings.gateway.host,
            port=self.settings.gateway.port,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(self.settings.drain_timeout_seconds),
        )
        self.server = GracefulServer(config, self.gateway.readiness.stop)

    def health_server(self) -> HealthServer | None:
        """/metrics, /healthz, /readyz (with the reason) and the API documentation: on the
        metrics port only, like every service, not on the public one."""
        if not self.settings.metrics_port:
            return None
        return HealthServer(
            self.registry,
            self.settings.metrics_host,
            self.settings.metrics_port,
            healthy=lambda: (True, "serving"),
            ready=self.gateway.readiness.verdict,
            pages=docs_routes(self.app),
        )

    def run_forever(self) -> int:
        """Serve until SIGTERM or SIGINT; returns the process exit code."""
        settings = self.settings
        try:
            start_observability(self.name, settings.log_level, settings.log_format)
            health = self.health_server()
        except ConfigError as exc:  # an exporter not installed, the metrics port in use
            log.error("cannot start: %s", exc)
            return 2
        return serve(self.server, health, self.name)


def build(settings: Settings | None = None) -> GatewayServer:
    """The gateway server for ``settings`` (default: read from the environment)."""
    return GatewayServer(settings if settings is not None else load_settings())

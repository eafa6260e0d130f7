"""The gateway process: the app under uvicorn, with a graceful stop on SIGTERM.

On SIGTERM (or SIGINT) the server stops accepting connections and reports not ready,
finishes the requests in flight (each waits for its acknowledgement) within the drain
deadline, then the lifespan closes the Publisher, which flushes what is queued
(:mod:`pipeline.http.server`).
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError
from pipeline.http.server import GracefulServer, serve
from pipeline.observability.health import HealthServer
from pipeline.observability.otel import start_observability
from pipeline.services.gateway.api import docs_routes
from pipeline.services.gateway.app import create_app
from pipeline.services.gateway.ingest import Gateway

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


class GatewayServer:
    """What ``pipeline run gateway`` runs: ``name`` and ``run_forever()``."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = gateway_settings(settings)
        self.name = self.settings.service_name or "gateway"
        self.registry = registry if registry is not None else CollectorRegistry()
        self.app = create_app(self.settings, registry=self.registry)
        self.gateway: Gateway = self.app.state.gateway
        self.server = GracefulServer.for_app(
            self.app,
            host=self.settings.gateway.host,
            port=self.settings.gateway.port,
            drain_timeout_seconds=self.settings.drain_timeout_seconds,
            on_exit=self.gateway.readiness.stop,
            limits=self.settings.http,
            loop=self.settings.event_loop,
        )

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

"""The console process: the app under uvicorn, metrics and probes on the metrics port."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError
from pipeline.http.server import GracefulServer, serve
from pipeline.observability.health import HealthServer
from pipeline.observability.otel import start_observability
from pipeline.services.console.app import create_app
from pipeline.services.console.site import Console

log = logging.getLogger(__name__)


class ConsoleServer:
    """What ``pipeline run console`` runs: ``name`` and ``run_forever()``."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.name = settings.service_name or "console"
        self.registry = registry if registry is not None else CollectorRegistry()
        self.app = create_app(settings, registry=self.registry)
        self.console: Console = self.app.state.console
        self.server = GracefulServer.for_app(
            self.app,
            host=settings.console.host,
            port=settings.console.port,
            drain_timeout_seconds=settings.drain_timeout_seconds,
            on_exit=self.console.readiness.stop,
            limits=settings.http,
            loop=settings.event_loop,
        )

    def run_forever(self) -> int:
        """Serve until SIGTERM or SIGINT; returns the process exit code."""
        settings = self.settings
        try:
            start_observability(self.name, settings.log_level, settings.log_format)
            health = None
            if settings.metrics_port:
                health = HealthServer(
                    self.registry,
                    settings.metrics_host,
                    settings.metrics_port,
                    healthy=lambda: (True, "serving"),
                    ready=self.console.ready,
                )
        except ConfigError as exc:
            log.error("cannot start: %s", exc)
            return 2
        return serve(self.server, health, self.name)


def build(settings: Settings | None = None) -> ConsoleServer:
    """The console server for ``settings`` (default: read from the environment)."""
    return ConsoleServer(settings if settings is not None else load_settings())

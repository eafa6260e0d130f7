"""``/metrics``, ``/healthz`` and ``/readyz`` on one small HTTP server in its own thread.

This is the operators' port, not the public one: a service may add fixed pages to it
(the gateway serves its API documentation here).
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, str]]


class HealthServer:
    """Serves the registry, two probes and ``pages`` (path -> content type and body);
    ``port=0`` picks a free port. A port in use is a ConfigError naming ``setting``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        healthy: Probe,
        ready: Probe,
        pages: Mapping[str, tuple[str, bytes]] | None = None,
        setting: str = "PIPELINE_METRICS_PORT",
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            path: functools.partial(_page, content_type, body)
            for path, (content_type, body) in (pages or {}).items()
        }
        routes |= {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda: _probe(healthy),
            "/readyz": lambda: _probe(ready),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                status, content_type, body = route() if route else _not_found(self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("%s " + format, self.address_string(), *args)

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise ConfigError(
                f"{setting}: port {port} on {host} is already in use; choose a free port "
                f"(or 0 to turn /metrics, /healthz and /readyz off)"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _probe(check: Probe) -> tuple[int, str, bytes]:
    ok, reason = check()
    body = json.dumps({"status": "ok" if ok else "unavailable", "reason": reason}).encode()
    return (200 if ok else 503), "application/json", body


def _page(content_type: str, body: bytes) -> tuple[int, str, bytes]:
    return 200, content_type, body


def _not_found(path: str) -> tuple[int, str, bytes]:
    body = json.dumps({"error": f"no route {path[:200]}; try /metrics, /healthz or /readyz"})
    return 404, "application/json", body.encode()

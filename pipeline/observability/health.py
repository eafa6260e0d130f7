"""``/metrics``, ``/healthz`` and ``/readyz`` on one small HTTP server in its own thread."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, str]]


class HealthServer:
    """Serves the registry and two probes; ``port=0`` picks a free port."""

    def __init__(
        self, registry: CollectorRegistry, host: str, port: int, healthy: Probe, ready: Probe
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
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

        self._server = ThreadingHTTPServer((host, port), Handler)
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


def _not_found(path: str) -> tuple[int, str, bytes]:
    body = json.dumps({"error": f"no route {path}; try /metrics, /healthz or /readyz"})
    return 404, "application/json", body.encode()

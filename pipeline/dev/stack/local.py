"""Every service on this machine, supervised, with a local Kafka when none is configured."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from pipeline.channels.web import chat_token
from pipeline.channels.web.chat_token import ChatScope
from pipeline.config import Settings
from pipeline.dev.kafka import DevKafka, port_in_use
from pipeline.dev.stack.supervisor import SERVICES, Supervisor
from pipeline.errors import StackError
from pipeline.topology import admin_client, apply, load_settings_topology

log = logging.getLogger(__name__)

DEVELOPMENT_CALLBACK_SECRET = "development-callback-secret"
DEVELOPMENT_CHAT_SECRET = "development-chat-token-secret"
CHAT_TENANT, CHAT_USER = "demo", "you"


def development_env(callback_secret: str = DEVELOPMENT_CALLBACK_SECRET) -> dict[str, str]:
    """The development settings of a stack on one machine: web callbacks may go to local
    receivers on 127.0.0.1 over http (production allows neither), and are signed with
    ``callback_secret`` for every tenant; chat tokens for the chat page are signed with a
    development secret; the console's cookie works over plain http."""
    return {
        "PIPELINE_GATEWAY__CHAT_TOKEN_SECRET": DEVELOPMENT_CHAT_SECRET,
        "PIPELINE_CONSOLE__COOKIE_SECURE": "false",
        "PIPELINE_DELIVERY__CALLBACK_ALLOW_HTTP": "true",
        "PIPELINE_DELIVERY__CALLBACK_ALLOWED_NETWORKS": '["127.0.0.0/8", "::1/128"]',
        "PIPELINE_DELIVERY__CALLBACK_SIGNING_SECRETS": json.dumps({"*": callback_secret}),
    }


class LocalStack:
    """Start Kafka if needed, apply the topics, run the services; stop it all on exit.

    ``env`` holds the PIPELINE_* settings every service gets (on top of this process's
    environment, on top of :func:`development_env`). Service N serves /metrics, /healthz
    and /readyz on ``metrics_base_port + N``; the gateway listens on its configured port.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        services: Sequence[str] = SERVICES,
        kafka_port: int = 9092,
        metrics_base_port: int = 9101,
        log_dir: Path | None = None,
        ready_timeout: float = 120.0,
    ) -> None:
        self.env = development_env()
        self.env.update({k: v for k, v in os.environ.items() if k.startswith("PIPELINE_")})
        self.env.update(env or {})
        self.services = list(services)
        self.kafka_port = kafka_port
        self.metrics_base_port = metrics_base_port
        self.log_dir = log_dir
        self.ready_timeout = ready_timeout
        self.broker: DevKafka | None = None
        self.supervisor: Supervisor | None = None
        # Set from a signal handler: the wait for readiness gives up at once.
        self.stop_requested = threading.Event()

    def metrics_port(self, service: str) -> int:
        return self.metrics_base_port + self.services.index(service)

    def start(self) -> None:
        if "PIPELINE_BOOTSTRAP_SERVERS" not in self.env:
            if port_in_use(self.kafka_port):
                raise StackError(
                    f"port {self.kafka_port} is taken and PIPELINE_BOOTSTRAP_SERVERS is not "
                    "set: point it at your Kafka, or pick a free --kafka-port"
                )
            self.broker = DevKafka(self.kafka_port)
            self.broker.start()
            self.env["PIPELINE_BOOTSTRAP_SERVERS"] = self.broker.bootstrap_servers
            self.env.setdefault("PIPELINE_TOPIC_REPLICATION_FACTOR", "1")
        settings = self.settings()
        changes = apply(admin_client(settings), load_settings_topology(settings), settings)
        log.info("topics: %d changes", len(changes))
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        processes = {}
        for service in self.services:
            env = {**os.environ, **self.env}
            env["PIPELINE_METRICS_PORT"] = str(self.metrics_port(service))
            processes[service] = env
        self.supervisor = Supervisor(processes, log_dir=self.log_dir)
        self.supervisor.start()
        self.wait_until_ready()

    def settings(self) -> Settings:
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            return Settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def chat_url(self) -> str | None:
        """The gateway's chat page with a fresh chat token for a development user, or None
        when chat tokens are not configured."""
        gateway = self.settings().gateway
        if gateway.chat_token_secret is None:
            return None
        expires = int(time.time()) + gateway.chat_token_ttl_seconds
        scope = ChatScope(CHAT_TENANT, CHAT_USER, f"web:{CHAT_TENANT}:{CHAT_USER}", expires)
        token = chat_token.issue(gateway.chat_token_secret.get_secret_value(), scope)
        return f"http://127.0.0.1:{gateway.port}/chat#token={token}"

    def wait_until_ready(self) -> None:
        """Poll every service's /readyz until all answer 200."""
        deadline = time.monotonic() + self.ready_timeout
        waiting = set(self.services)
        with httpx.Client(timeout=2.0) as client:
            while waiting and time.monotonic() < deadline:
                if self.stop_requested.is_set():
                    raise StackError("stopped before every service was ready")
                for service in sorted(waiting):
                    url = f"http://127.0.0.1:{self.metrics_port(service)}/readyz"
                    try:
                        if client.get(url).status_code == 200:
                            waiting.discard(service)
                    except httpx.HTTPError:
                        pass
                if waiting:
                    time.sleep(0.5)
        if waiting:
            raise StackError(f"not ready after {self.ready_timeout:.0f}s: {sorted(waiting)}")

    def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        if self.supervisor is not None:
            codes = self.supervisor.stop()
        if self.broker is not None:
            self.broker.stop()
        return codes

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

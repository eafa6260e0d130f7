"""Every service on this machine, supervised, with a local Kafka when none is configured."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from pipeline.config import Settings, load_settings
from pipeline.dev.kafka import DevKafka, port_in_use
from pipeline.dev.stack.chat_link import DEVELOPMENT_CHAT_SECRET, ChatLink, chat_link
from pipeline.dev.stack.supervisor import SERVICES, Supervisor
from pipeline.errors import StackError
from pipeline.topology import admin_client, apply, load_settings_topology

log = logging.getLogger(__name__)

DEVELOPMENT_CALLBACK_SECRET = "development-callback-secret"

# The options of `pipeline up` that move each port a service listens on.
GATEWAY_PORT_OPTION = "--gateway-port"
CONSOLE_PORT_OPTION = "--console-port"
METRICS_PORT_OPTION = "--metrics-base-port"
_IN_USE = re.compile(r"address already in use", re.IGNORECASE)
_PORT = re.compile(r"\b(\d{2,5})\)?: address already in use", re.IGNORECASE)


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
    and /readyz on ``metrics_base_port + N``; the gateway and the console listen on their
    configured ports. A port already taken stops the start with the option that moves
    it; ``notify`` gets what the services say that the terminal should show (see
    :class:`~pipeline.dev.stack.supervisor.Supervisor`).
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
        notify: Callable[[str], None] = log.warning,
    ) -> None:
        self.env = development_env()
        self.env.update({k: v for k, v in os.environ.items() if k.startswith("PIPELINE_")})
        self.env.update(env or {})
        self.services = list(services)
        self.kafka_port = kafka_port
        self.metrics_base_port = metrics_base_port
        self.log_dir = log_dir
        self.ready_timeout = ready_timeout
        self.notify = notify
        self.broker: DevKafka | None = None
        self.supervisor: Supervisor | None = None
        # Set from a signal handler: the wait for readiness gives up at once.
        self.stop_requested = threading.Event()

    def metrics_port(self, service: str) -> int:
        return self.metrics_base_port + self.services.index(service)

    def listening_ports(self) -> dict[int, tuple[str, str]]:
        """Every port the services will listen on: what it is, and the option moving it."""
        gateway = self.env.get("PIPELINE_GATEWAY__PORT", "8080")
        console = self.env.get("PIPELINE_CONSOLE__PORT", "8090")
        ports: dict[int, tuple[str, str]] = {}
        for service in self.services:
            what = f"the metrics port of {service}"
            ports[self.metrics_port(service)] = (what, METRICS_PORT_OPTION)
        if "gateway" in self.services and gateway.isdigit():
            ports[int(gateway)] = ("the gateway's port", GATEWAY_PORT_OPTION)
        if "console" in self.services and console.isdigit():
            ports[int(console)] = ("the console's port", CONSOLE_PORT_OPTION)
        return ports

    def check_ports(self) -> None:
        """StackError naming the first port that is taken and the option that moves it."""
        for port, (what, option) in sorted(self.listening_ports().items()):
            if port_in_use(port):
                raise StackError(
                    f"port {port} ({what}) is in use, perhaps by another `pipeline up`: "
                    f"stop that, or pick another port with {option}"
                )

    def advise(self, service: str, error: str) -> str | None:
        """What to do about a service's last error line: the option moving a taken port."""
        if not _IN_USE.search(error):
            return None
        found = _PORT.search(error)
        ports = self.listening_ports()
        if found is not None and int(found.group(1)) in ports:
            what, option = ports[int(found.group(1))]
            return f"{what}, {found.group(1)}, is taken: pick another with {option}"
        mine = sorted(option for what, option in ports.values() if service in what)
        options = sorted({*mine, METRICS_PORT_OPTION})
        return f"a port of {service} is taken: pick others with {' or '.join(options)}"

    def start(self) -> None:
        self.settings()  # a setting that cannot work stops the start, naming its variable
        self.check_ports()
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
        self.supervisor = Supervisor(
            processes, log_dir=self.log_dir, notify=self.notify, advise=self.advise
        )
        self.supervisor.start()
        self.wait_until_ready()

    def settings(self) -> Settings:
        """The settings the services get; ConfigError naming any setting that cannot work."""
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            return load_settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def chat_url(self) -> str | None:
        """The gateway's chat page with a fresh chat token for a development user, or None
        when chat tokens are not configured."""
        link = self.chat_link()
        return None if link is None else link.url

    def chat_link(self) -> ChatLink | None:
        """:meth:`chat_url` with the token's expiry."""
        gateway = self.settings().gateway
        if gateway.chat_token_secret is None:
            return None
        return chat_link(gateway, gateway.chat_token_secret.get_secret_value())

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

"""Run every service as its own process, restart the ones that die, stop them together."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

SERVICES = ("gateway", "agent", "tools", "delivery", "scheduler", "webhooks")


@dataclass
class ServiceProcess:
    """One supervised ``pipeline run NAME`` process."""

    name: str
    env: dict[str, str]
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.log_path is not None and self._log_file is None:
            self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", self.name],
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT if self._log_file else None,
        )
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)

    def close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class Supervisor:
    """Starts the services, restarts a crashed one with backoff, stops all on request.

    A service that keeps crashing right after start (``max_restarts`` within a minute)
    stops the whole stack with an error instead of looping forever.
    """

    def __init__(
        self,
        services: Mapping[str, Mapping[str, str]],
        *,
        log_dir: Path | None = None,
        max_restarts: int = 5,
        stop_timeout: float = 30.0,
    ) -> None:
        self.services = [
            ServiceProcess(name, dict(env), log_dir / f"{name}.log" if log_dir else None)
            for name, env in services.items()
        ]
        self.max_restarts = max_restarts
        self.stop_timeout = stop_timeout
        self.stopping = threading.Event()
        self.failure: str | None = None
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        """Start every service and supervise them from a thread of their own, at once: a
        service that dies while the others are still starting is restarted too."""
        for service in self.services:
            service.start()
        self._watcher = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._watcher.start()

    def watch(self) -> None:
        """Block until ``stopping`` is set (by a signal handler, or because a service
        cannot be kept running)."""
        while not self.stopping.wait(0.5):
            pass

    def _watch(self) -> None:
        while not self.stopping.wait(0.5):
            for service in self.services:
                assert service.process is not None
                code = service.process.poll()
                if code is None:
                    continue
                if time.monotonic() - service.started_at > 60:
                    service.restarts = 0
                service.restarts += 1
                if service.restarts > self.max_restarts:
                    self.failure = f"{service.name} keeps exiting (last exit code {code})"
                    log.error("%s; stopping the stack", self.failure)
                    self.stopping.set()
                    break
                delay = min(10.0, 0.5 * 2 ** (service.restarts - 1))
                log.warning("%s exited with %s; restarting in %.1fs", service.name, code, delay)
                if self.stopping.wait(delay):
                    break
                service.start()

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every service, wait for them to drain, SIGKILL what is left."""
        self.stopping.set()
        if self._watcher is not None:
            self._watcher.join()  # no restart can race the stop
        for service in self.services:
            if service.process and service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        codes: dict[str, int | None] = {}
        for service in self.services:
            if service.process is None:
                continue
            try:
                codes[service.name] = service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", service.name)
                service.process.kill()
                codes[service.name] = service.process.wait()
            service.close_log()
        return codes

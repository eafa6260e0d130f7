"""Run every service as its own process, restart the ones that die, stop them together.

What a service writes goes to its log file (or this process's stderr); what the person
running the stack must see (Kafka lost and back, why a service exited) goes to
``notify``: the terminal of ``pipeline up``.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pipeline.dev.stack.child_output import ChildOutput

log = logging.getLogger(__name__)

# A service's exit cause and what to do about it, from its last error line; None: no advice.
Advice = Callable[[str, str], str | None]

SERVICES = ("gateway", "agent", "tools", "delivery", "scheduler", "webhooks", "console")


@dataclass
class ServiceProcess:
    """One supervised ``pipeline run NAME`` process."""

    name: str
    env: dict[str, str]
    log_path: Path | None = None
    notify: Callable[[str], None] = log.warning
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    output: ChildOutput | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)
    _reader: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.log_path is not None and self._log_file is None:
            self._log_file = self.log_path.open("ab")
        if self.output is None:
            sink = self._log_file if self._log_file is not None else _stderr()
            self.output = ChildOutput(self.name, sink, self.notify)
        self.output.forget_error()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", self.name],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        self._reader = threading.Thread(
            target=self.output.pump,
            args=(self.process.stdout,),
            name=f"output-{self.name}",
            daemon=True,
        )
        self._reader.start()
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)

    def last_error(self, timeout: float = 2.0) -> str | None:
        """The last error line of the exited process, once its output is read to the end."""
        if self._reader is not None:
            self._reader.join(timeout)
        return None if self.output is None else self.output.last_error

    def close_log(self) -> None:
        if self._reader is not None:
            self._reader.join(2.0)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class Supervisor:
    """Starts the services, restarts a crashed one with backoff, stops all on request.

    A service that keeps crashing right after start (``max_restarts`` within a minute)
    stops the whole stack with an error instead of looping forever. ``notify`` gets one
    line for each thing said where the stack runs: Kafka lost or back for a service, and
    a service's exit with its last error line and what ``advise`` makes of it.
    """

    def __init__(
        self,
        services: Mapping[str, Mapping[str, str]],
        *,
        log_dir: Path | None = None,
        max_restarts: int = 5,
        stop_timeout: float = 30.0,
        notify: Callable[[str], None] = log.warning,
        advise: Advice | None = None,
    ) -> None:
        self.services = [
            ServiceProcess(name, dict(env), log_dir / f"{name}.log" if log_dir else None, notify)
            for name, env in services.items()
        ]
        self.notify = notify
        self.advise = advise
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
                cause = self._cause(service)
                if service.restarts > self.max_restarts:
                    self.failure = f"{service.name} keeps exiting (last exit code {code}){cause}"
                    self.notify(f"{self.failure}; stopping the stack")
                    self.stopping.set()
                    break
                delay = min(10.0, 0.5 * 2 ** (service.restarts - 1))
                self.notify(f"{service.name} exited with {code}{cause}; restarting in {delay:.1f}s")
                if self.stopping.wait(delay):
                    break
                service.start()

    def _cause(self, service: ServiceProcess) -> str:
        """``: <last error line>`` and the advice on it, or nothing when it wrote none."""
        error = service.last_error()
        if error is None:
            return ""
        advice = self.advise(service.name, error) if self.advise is not None else None
        return f": {error}" + (f" ({advice})" if advice else "")

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


def _stderr() -> IO[bytes]:
    """This process's own standard error, where a service without a log file writes."""
    stream = sys.__stderr__ if sys.__stderr__ is not None else sys.stderr
    return stream.buffer

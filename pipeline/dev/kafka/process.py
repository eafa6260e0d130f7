"""The broker's JVM as an operating-system process, and the local ports it needs.

A node runs detached (its own session) with its pid in a pid file, so a later command
(``pipeline kafka stop``, a CI trap) finds and stops it; a pid file whose pid now
belongs to another process is not taken for the broker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "BrokerProcess",
    "free_port",
    "is_broker_process",
    "pid_alive",
    "port_in_use",
    "read_pid",
    "tail",
    "write_pid",
]


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file``, or None when the file is missing or does not hold a pid."""
    try:
        text = pid_file.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_pid(pid_file: Path, pid: int) -> None:
    """Write ``pid`` atomically (write a temporary file, then rename it)."""
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    tmp.replace(pid_file)


def pid_alive(pid: int) -> bool:
    """True when ``pid`` names a running (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0:1] != ["Z"]


def is_broker_process(pid: int, server_properties: Path) -> bool:
    """True when ``pid`` is a live ``kafka.Kafka`` run with this ``server_properties``.

    Guards against a stale pid file whose pid now belongs to another process.
    """
    if not pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no procfs: the pid file is all we have
    return b"kafka.Kafka" in args and os.fsencode(server_properties) in args


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when ``port`` on 127.0.0.1 cannot be bound: something holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class BrokerProcess:
    """The JVM of one node: started detached, found again by its pid file, stopped.

    ``server_properties`` tells this node's ``kafka.Kafka`` from any other process (see
    :func:`is_broker_process`). The process handle of a JVM this object started is kept,
    so its exit code is known and it is reaped (no zombie) when it stops.
    """

    def __init__(self, pid_file: Path, server_properties: Path) -> None:
        self.pid_file = pid_file
        self.server_properties = server_properties
        self._proc: subprocess.Popen[bytes] | None = None

    def pid(self) -> int | None:
        """The pid of this broker when it is running, else None."""
        pid = read_pid(self.pid_file)
        if pid is not None and is_broker_process(pid, self.server_properties):
            return pid
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def alive(self) -> bool:
        """Whether the JVM still runs, asked of the process handle when there is one."""
        # /proc/<pid>/cmdline can read empty or stale for a moment while the JVM launcher
        # starts up, so the handle is the better witness for a JVM this object started.
        if self._proc is not None:
            return self._proc.poll() is None
        return self.is_running()

    def exit_code(self) -> int | None:
        """The exit code of the JVM this object started, once it has exited."""
        return self._proc.poll() if self._proc is not None else None

    def spawn(self, cmd: Sequence[str], out_file: Path, cwd: Path) -> None:
        """Start ``cmd`` with its output appended to ``out_file`` and record its pid."""
        with out_file.open("ab") as out:
            # Own session: the broker survives this process and ignores its Ctrl-C.
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        write_pid(self.pid_file, self._proc.pid)

    def stop(self, timeout: float) -> bool:
        """SIGTERM the broker, SIGKILL it after ``timeout``; False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            self._reap(0)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)  # a paused broker handles the SIGTERM once thawed
        if not self._wait_exit(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> bool:
        """SIGKILL the broker (a crash, for failure tests); False if it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._wait_exit(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._reap(timeout)
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _reap(self, timeout: float) -> bool:
        """Wait for the child this object started (if any), so it leaves no zombie."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        self._proc = None
        return True

"""What a supervised service says that belongs in the terminal of ``pipeline up``.

Every line a service writes goes to its log file; a few are worth saying where the
person running the stack looks: Kafka lost and back (once per transition and service,
however many clients the service has), and the last error line before the service
exited, which carries the cause (``address already in use``, a setting refused).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import IO

# The lines pipeline.observability.kafka_logs.ClusterConnection logs on a transition.
_KAFKA_LOST = re.compile(r"Kafka at (?P<servers>\S+) is unreachable \((?P<reason>.*)\); retrying")
_KAFKA_BACK = re.compile(
    r"Kafka at (?P<servers>\S+) is reachable again after (?P<seconds>[\d.]+)s down"
)
# A logging line at ERROR or CRITICAL (text format: "time LEVEL logger: message"), a
# command's "error: ..." line, or the last line of a traceback ("OSError: ...").
_LEVEL = re.compile(r"\b(ERROR|CRITICAL)\b")
_ERROR_LINE = re.compile(r"^(error|Error): |^[A-Za-z_][\w.]*(Error|Exception|Exit): ")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:,.]+\s+")


class ChildOutput:
    """Reads one service's combined stdout and stderr until it closes.

    Copies each line to ``sink`` (its log file), calls ``notify`` with one line when the
    service loses Kafka and when it has it back, and keeps :attr:`last_error`.
    """

    def __init__(self, name: str, sink: IO[bytes], notify: Callable[[str], None]) -> None:
        self.name = name
        self.sink = sink
        self.notify = notify
        self.kafka_down = False
        self._last_error: str | None = None
        self._lock = threading.Lock()

    @property
    def last_error(self) -> str | None:
        """The last error line the service wrote (timestamp left out), if any."""
        with self._lock:
            return self._last_error

    def forget_error(self) -> None:
        """A new process of the service starts: an old process's error is no cause of its."""
        with self._lock:
            self._last_error = None

    def pump(self, stream: IO[bytes]) -> None:
        """Read ``stream`` to its end (run on a thread of its own)."""
        for raw in iter(stream.readline, b""):
            self.sink.write(raw)
            self.sink.flush()
            self.feed(raw.decode("utf-8", "replace").rstrip())
        stream.close()

    def feed(self, line: str) -> None:
        """Look at one line of output."""
        level, message = _level_and_message(line)
        lost = _KAFKA_LOST.search(message)
        if lost is not None:
            if not self.kafka_down:
                self.kafka_down = True
                self.notify(
                    f"{self.name}: lost Kafka at {lost['servers']} ({lost['reason']}); "
                    "it keeps retrying"
                )
            return
        back = _KAFKA_BACK.search(message)
        if back is not None:
            if self.kafka_down:
                self.kafka_down = False
                self.notify(
                    f"{self.name}: Kafka at {back['servers']} is back "
                    f"(after {back['seconds']}s down)"
                )
            return
        if level in ("ERROR", "CRITICAL") or _ERROR_LINE.search(message):
            with self._lock:
                self._last_error = message if level is None else f"{level} {message}"


def _level_and_message(line: str) -> tuple[str | None, str]:
    """The level and message of a JSON log line or a text one (timestamp removed)."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and "message" in record:
            return str(record.get("level") or "") or None, str(record["message"])
    text = _TIMESTAMP.sub("", line)
    level = _LEVEL.match(text)
    if level is not None:
        return level.group(1), text[level.end() :].strip()
    return None, text

"""librdkafka's logs and errors as a few readable lines, and whether the cluster answers.

librdkafka retries a lost connection on its own and says so, at every retry, on
stderr: with the cluster down for 40 s that is hundreds of ``%3|FAIL|`` lines per
client. Here a client's ``logger`` and ``error_cb`` report to one
:class:`ClusterConnection`, which logs through Python logging (logger ``pipeline.kafka``):

- one WARNING when the cluster becomes unreachable (librdkafka's
  ``_ALL_BROKERS_DOWN``), and one INFO when it answers again, with how long it was
  down; the connection failures in between are DEBUG lines;
- any other librdkafka line at most once a minute, with how often it was suppressed.

The same object tells the readiness probes how long the cluster has been unreachable
and, from librdkafka's statistics (``stats_cb``), the consumer group's state.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ClusterMetadata  # type: ignore[attr-defined]

from pipeline.errors import BrokerUnavailableError

log = logging.getLogger("pipeline.kafka")

REPEAT_WINDOW_SECONDS = 60.0
STATS_INTERVAL_MS = 2000

# Connection failures librdkafka logs on every retry; the WARNING for the cluster covers them.
_CONNECTION_FACILITIES = frozenset({"FAIL", "ERROR", "BRKMAIN", "REQTMOUT"})
_NUMBERS = re.compile(r"\d+")


@dataclass(frozen=True)
class GroupState:
    """The consumer group as librdkafka's statistics describe it."""

    state: str
    """``up`` once the group coordinator is known and reachable."""
    join_state: str
    """``steady`` once the member joined and its assignment is in effect."""
    assignment_size: int

    @property
    def stable(self) -> bool:
        return self.state == "up" and self.join_state == "steady"

    def describe(self) -> str:
        return f"group {self.state}, {self.join_state}, {self.assignment_size} partitions"


class ClusterConnection:
    """Whether the cluster answers, as seen by the clients whose callbacks report here.

    Thread-safe: librdkafka calls back on whichever thread serves the client.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.log = logger
        self.clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._reason = ""
        self._group: GroupState | None = None
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    # ------------------------------------------------------------ what clients report

    def on_error(self, error: KafkaError) -> None:
        """librdkafka's ``error_cb``: the cluster unreachable, or another client error."""
        code = error.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            self.down(error.str())
        elif code in (KafkaError._TRANSPORT, KafkaError._RESOLVE, KafkaError._TIMED_OUT):
            with self._lock:
                self._reason = error.str()
            self.log.debug("Kafka client: %s", error.str())
        elif error.fatal():
            self.log.error("Kafka client fatal error: %s (%s)", error.str(), error.name())
        else:
            self._log_limited(logging.WARNING, error.name(), error.str())

    def on_stats(self, raw: str) -> None:
        """librdkafka's ``stats_cb``: a connected broker proves the cluster answers."""
        try:
            stats: dict[str, Any] = json.loads(raw)
        except ValueError:
            return
        brokers = stats.get("brokers") or {}
        if any(b.get("state") == "UP" for b in brokers.values()):
            self.up()
        cgrp = stats.get("cgrp")
        if isinstance(cgrp, dict):
            group = GroupState(
                str(cgrp.get("state", "")),
                str(cgrp.get("join_state", "")),
                int(cgrp.get("assignment_size", 0)),
            )
            with self._lock:
                self._group = group

    def down(self, reason: str) -> None:
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = self.clock()
            detail = self._reason or reason
        self.log.warning(
            "Kafka at %s is unreachable (%s); retrying, quietly until it is back",
            self.bootstrap_servers,
            detail,
        )

    def up(self) -> None:
        """The cluster answered (a connected broker, a fetched record)."""
        with self._lock:
            since = self._down_since
            self._down_since = None
            self._reason = ""
        if since is not None:
            self.log.info(
                "Kafka at %s is reachable again after %.1fs down",
                self.bootstrap_servers,
                self.clock() - since,
            )

    def log_line(self, level: int, fmt: str, *args: Any) -> None:
        """A librdkafka log line (the ``logger`` protocol: ``fmt % args``)."""
        facility = str(args[0]) if args else ""
        if facility in _CONNECTION_FACILITIES:
            # Repeated on every retry; the cluster's WARNING and INFO say what matters.
            self.log.debug(fmt, *args)
            return
        text = str(args[-1]) if args else fmt
        self._log_limited(level, facility, text)

    # ------------------------------------------------------------ what the probes read

    @property
    def down_for(self) -> float:
        """Seconds since the cluster became unreachable; 0 while it answers."""
        with self._lock:
            since = self._down_since
        return 0.0 if since is None else self.clock() - since

    @property
    def unreachable(self) -> bool:
        with self._lock:
            return self._down_since is not None

    @property
    def reason(self) -> str:
        with self._lock:
            return self._reason

    @property
    def group(self) -> GroupState | None:
        with self._lock:
            return self._group

    # ------------------------------------------------------------ client configuration

    def client_config(self) -> dict[str, Any]:
        """What a producer or admin client needs to report here."""
        return {"logger": _Logs(self), "error_cb": self.on_error}

    def consumer_config(self) -> dict[str, Any]:
        """What a consumer needs: statistics too, for its group's state."""
        return {
            **self.client_config(),
            "stats_cb": self.on_stats,
            "statistics.interval.ms": STATS_INTERVAL_MS,
        }

    # ------------------------------------------------------------ rate limit

    def _log_limited(self, level: int, facility: str, text: str) -> None:
        key = (facility, _NUMBERS.sub("N", text))
        now = self.clock()
        with self._lock:
            first, suppressed = self._seen.get(key, (-REPEAT_WINDOW_SECONDS, 0))
            if now - first < REPEAT_WINDOW_SECONDS:
                self._seen[key] = (first, suppressed + 1)
                return
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # forget old keys rather than grow without bound
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < 60}
        more = f" (and {suppressed} more like it in the last minute)" if suppressed else ""
        self.log.log(level, "librdkafka %s: %s%s", facility, text, more)


class _Logs:
    """The object given to librdkafka as ``logger``: it calls ``log(level, fmt, *args)``."""

    def __init__(self, connection: ClusterConnection) -> None:
        self.connection = connection

    def log(self, level: int, fmt: str, *args: Any) -> None:
        self.connection.log_line(level, fmt, *args)


class _MetadataClient(Protocol):
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata: ...

    def poll(self, timeout: float = -1) -> Any: ...


def cli_connection(bootstrap_servers: str) -> ClusterConnection:
    """A connection for a command: nothing logged below ERROR (the command says it once)."""
    quiet = logging.getLogger("pipeline.kafka.cli")
    quiet.setLevel(logging.ERROR)
    return ClusterConnection(bootstrap_servers, logger=quiet)


def announcing_connection(bootstrap_servers: str, command: str) -> ClusterConnection:
    """A connection for a command that keeps running (``pipeline tail``): quiet like
    :func:`cli_connection` until :func:`announce` is called, then one line on stderr,
    prefixed with ``command``, when the cluster becomes unreachable and when it is back."""
    logger = logging.getLogger(f"pipeline.kafka.{command}")
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"{command}: %(message)s"))
        logger.addHandler(handler)
    return ClusterConnection(bootstrap_servers, logger=logger)


def announce(connection: ClusterConnection) -> None:
    """From now on, ``connection`` (of :func:`announcing_connection`) says when the
    cluster goes and comes back."""
    connection.log.setLevel(logging.INFO)


def wait_for_metadata(
    client: _MetadataClient,
    connection: ClusterConnection,
    timeout: float,
    topic: str | None = None,
) -> ClusterMetadata:
    """The cluster's metadata, or :class:`BrokerUnavailableError` naming the servers.

    Gives up early once librdkafka reported every broker down (a wrong address fails in
    a moment, not after ``timeout``); ``client`` is a consumer, producer or admin client
    configured with ``connection``'s callbacks.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            metadata = client.list_topics(topic, timeout=max(0.1, min(1.0, left)))
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            detail = error.str() if isinstance(error, KafkaError) else str(exc)
        else:
            connection.up()
            return metadata
        client.poll(0)  # serves error_cb
        if connection.unreachable or left <= 0:
            raise BrokerUnavailableError(unreachable(connection, connection.reason or detail))


def unreachable(connection: ClusterConnection, detail: str) -> str:
    """The one line a command prints when the cluster does not answer."""
    return (
        f"Kafka at {connection.bootstrap_servers} is unreachable ({detail}); check "
        "PIPELINE_BOOTSTRAP_SERVERS and that the cluster is running"
    )

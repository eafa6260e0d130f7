"""Is an HTTP service ready? A background check of Kafka whose last answer the probes read.

``/readyz`` must not block on the broker, and the probe of the metrics port runs on
another thread, so a task asks the cluster for its metadata every few seconds and
stores the answer; the probes only read it. The gateway and the console use it.

The service stays ready while Kafka is down: it answers every request, with 503 and
Retry-After for those it cannot store, which is what clients are designed for; taking
every replica out of its Service would turn that answer into connection errors. The
reason then says "degraded". It is not ready while starting, while shutting down, and
when Kafka answers without the service's topics (a deployment to finish).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from confluent_kafka.admin import AdminClient

from pipeline.config import Settings
from pipeline.events.model import utc_now
from pipeline.observability.kafka_logs import ClusterConnection

log = logging.getLogger(__name__)

Verdict = tuple[bool, str]
REACHABLE = "Kafka reachable"


class KafkaReadiness:
    """Ready once checked, unless the topics the service writes are missing; degraded
    (still ready) while the cluster does not answer."""

    def __init__(self, settings: Settings, topics: tuple[str, ...], interval: float = 2.0) -> None:
        self.settings = settings
        self.topics = tuple(settings.topic(t) for t in topics)
        self.interval = interval
        self.timeout = max(1.0, min(5.0, settings.gateway.publish_timeout_seconds))
        self._verdict: Verdict = (False, "starting: Kafka not checked yet")
        self._stopping = False
        self._admin: AdminClient | None = None
        self.connection = ClusterConnection(settings.bootstrap_servers)
        self.unreachable_since: datetime | None = None
        """Since when Kafka has not answered the checks (None: it answered the last one)."""

    def verdict(self) -> Verdict:
        """The last answer (safe to call from any thread)."""
        if self._stopping:
            return False, "shutting down"
        return self._verdict

    @property
    def kafka_answers(self) -> bool:
        """Whether Kafka answered the last check (safe to call from any thread): False
        while it is degraded, or not checked yet."""
        _, reason = self._verdict
        return reason == REACHABLE or reason.startswith("topics missing")

    def stop(self) -> None:
        """From now on answer not ready (SIGTERM received)."""
        self._stopping = True

    async def run(self) -> None:
        """Check until cancelled."""
        try:
            while True:
                self._verdict = await asyncio.to_thread(self.check)
                await asyncio.sleep(self.interval)
        finally:
            self._admin = None  # the client has no close(); dropping it ends its threads

    def check(self) -> Verdict:
        if self._admin is None:
            config = {**self.settings.client_config(), **self.connection.client_config()}
            self._admin = AdminClient(config)
        try:
            metadata = self._admin.list_topics(timeout=self.timeout)
        except Exception as exc:  # KafkaException: transport failure or timeout
            self._admin.poll(0)  # serves error_cb: the connection logs the outage once
            self.unreachable_since = self.unreachable_since or utc_now()
            return True, (
                f"degraded: Kafka at {self.settings.bootstrap_servers} does not answer "
                f"({exc}); requests are answered 503 with Retry-After"
            )
        self.connection.up()
        self.unreachable_since = None
        missing = [t for t in self.topics if t not in metadata.topics]
        if missing:
            return False, f"topics missing: {', '.join(missing)} (run `pipeline topics apply`)"
        return True, REACHABLE

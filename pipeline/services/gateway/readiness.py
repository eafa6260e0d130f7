"""Is Kafka reachable? A background check whose last answer the probes read.

``/readyz`` must not block on the broker, and the probe of the metrics port runs on
another thread, so a task asks the cluster for its metadata every few seconds and
stores the answer; the probes only read it.
"""

from __future__ import annotations

import asyncio
import logging

from confluent_kafka.admin import AdminClient

from pipeline.config import Settings

log = logging.getLogger(__name__)

Verdict = tuple[bool, str]


class KafkaReadiness:
    """Ready once the cluster answers and lists the topics the gateway writes."""

    def __init__(self, settings: Settings, topics: tuple[str, ...], interval: float = 2.0) -> None:
        self.settings = settings
        self.topics = tuple(settings.topic(t) for t in topics)
        self.interval = interval
        self.timeout = max(1.0, min(5.0, settings.gateway.publish_timeout_seconds))
        self._verdict: Verdict = (False, "starting: Kafka not checked yet")
        self._stopping = False
        self._admin: AdminClient | None = None

    def verdict(self) -> Verdict:
        """The last answer (safe to call from any thread)."""
        if self._stopping:
            return False, "shutting down"
        return self._verdict

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
            config: dict[str, str | int | float | bool] = {**self.settings.client_config()}
            self._admin = AdminClient(config)
        try:
            metadata = self._admin.list_topics(timeout=self.timeout)
        except Exception as exc:  # KafkaException: transport failure or timeout
            return False, f"Kafka at {self.settings.bootstrap_servers} does not answer: {exc}"
        missing = [t for t in self.topics if t not in metadata.topics]
        if missing:
            return False, f"topics missing: {', '.join(missing)} (run `pipeline topics apply`)"
        return True, "Kafka reachable"

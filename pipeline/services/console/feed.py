"""The console's reader: every partition of the view's topics, folded into the view;
the dead letters and their redrives, which the view is told of (the dead-letters page and
refused operator actions show live); and the sessions topic, whose sign-outs end
sessions on this replica.

Each console replica reads everything itself (partitions assigned, no consumer group
membership, no commits), so every replica shows every conversation and refuses every
signed-out cookie. At start it seeks each partition of the view's topics to the first
offset at or after ``now - lookback_hours``, and each of the sessions topic to the first
at or after ``now - session_max_age_seconds`` (offsets_for_times; the end when nothing
is that recent), so an empty topic or a fresh cluster just yields nothing. A topic that
does not exist yet is looked for again every two seconds. Records are read on a worker
thread (``poll``, then whatever is already fetched), decoded, and folded on the event
loop; an undecodable record is skipped and counted, never stops the reader.
``sessions_read`` is set once the sessions topic was read to where it ended at start:
until then the replica is not ready (``/readyz``), so no signed-out cookie gets in.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.config import Settings
from pipeline.deadletters import REDRIVES_TOPIC, DeadLetterEntry
from pipeline.deadletters.entry import RedriveCodec, decode_entry
from pipeline.errors import PipelineError
from pipeline.events.model import Event, to_millis, utc_now
from pipeline.events.serde import SingleObjectSerde
from pipeline.services.console.sessions import EndedSessions, read_ended_record
from pipeline.services.console.view import TOPICS, ConsoleView

log = logging.getLogger(__name__)

BATCH = 500
RETRY_TOPICS_SECONDS = 2.0


@dataclass(slots=True)
class Batch:
    """What one fetch read: events, dead letters (with their original when it decodes),
    and the dead letters' ids that were redriven."""

    events: list[Event] = field(default_factory=list)
    letters: list[tuple[DeadLetterEntry, Event | None]] = field(default_factory=list)
    redriven: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events) + len(self.letters) + len(self.redriven)


class Feed:
    """Reads the topics into ``view`` until cancelled; ``caught_up`` once the backlog
    present at start has been read."""

    def __init__(
        self,
        settings: Settings,
        serde: SingleObjectSerde,
        view: ConsoleView,
        *,
        ended: EndedSessions | None = None,
        on_skipped: Callable[[], None] = lambda: None,
        client_config: dict[str, Any] | None = None,
        folds: Sequence[Callable[[list[Event]], object]] = (),
    ) -> None:
        """``folds`` are given every batch of events too (the human-cleanup page's)."""
        self.settings = settings
        self.serde = serde
        self.view = view
        self.ended = ended if ended is not None else EndedSessions()
        self.on_skipped = on_skipped
        self.sessions_topic = settings.topic(settings.console.sessions_topic)
        self.folds = tuple(folds)
        self.topics = {settings.topic(t): t for t in TOPICS}
        self.topics[self.sessions_topic] = settings.console.sessions_topic
        self.letters_topic = settings.topic(settings.dead_letter_topic)
        self.redrives_topic = settings.topic(REDRIVES_TOPIC)
        self.topics[self.letters_topic] = settings.dead_letter_topic
        self.topics[self.redrives_topic] = REDRIVES_TOPIC
        self._redrives = RedriveCodec(settings.resource_dir("schemas"))
        self.caught_up = asyncio.Event()
        self.sessions_read = asyncio.Event()
        self._assigned: set[str] = set()
        self._ends: dict[tuple[str, int], int] = {}
        self._consumer = Consumer(
            {
                **settings.consumer_config(),
                **(client_config or {}),
                # Never joins: assign() only; the id names the reader in broker logs.
                "group.id": f"{settings.topic_prefix}console-reader-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
            }
        )

    async def run(self) -> None:
        try:
            next_lookup = 0.0
            while True:
                if len(self._assigned) < len(self.topics) and time.monotonic() >= next_lookup:
                    await asyncio.to_thread(self._assign_new)
                    next_lookup = time.monotonic() + RETRY_TOPICS_SECONDS
                batch = await asyncio.to_thread(self._fetch)
                for fold in self.folds:
                    fold(batch.events)
                changed = self.view.apply_all(batch.events)
                for letter, original in batch.letters:
                    self.view.dead_lettered(letter, original)
                for dead_letter_id in batch.redriven:
                    self.view.redriven(dead_letter_id)
                if changed or batch.letters or batch.redriven:
                    await self.view.changed()
                if not self._ends and self._assigned and not self.caught_up.is_set():
                    self.caught_up.set()
                    await self.view.changed()
                if self.sessions_topic in self._assigned and not any(
                    topic == self.sessions_topic for topic, _ in self._ends
                ):
                    self.sessions_read.set()
        finally:
            await asyncio.to_thread(self._consumer.close)

    def _assign_new(self) -> None:
        try:
            metadata = self._consumer.list_topics(timeout=5.0)
        except KafkaException as exc:
            log.warning("console reader: no metadata yet (%s)", exc)
            return
        cfg = self.settings.console
        since = to_millis(utc_now() - timedelta(hours=cfg.lookback_hours))
        ended_since = to_millis(utc_now() - timedelta(seconds=cfg.session_max_age_seconds))
        wanted = []
        for physical in self.topics:
            found = metadata.topics.get(physical)
            if physical in self._assigned or found is None or found.error is not None:
                continue
            start = ended_since if physical == self.sessions_topic else since
            wanted += [TopicPartition(physical, p, start) for p in found.partitions]
            self._assigned.add(physical)
        if not wanted:
            if not self._assigned:
                log.warning("console reader: none of its topics exists yet")
            return
        try:
            self._seek_and_assign(wanted)
        except KafkaException as exc:  # leaders not elected yet, a timeout: try again
            log.warning("console reader: cannot assign its partitions yet (%s)", exc)
            self._assigned -= {tp.topic for tp in wanted}

    def _seek_and_assign(self, wanted: list[TopicPartition]) -> None:
        # The end first: a record written after it is read even if offsets_for_times
        # (which says -1 when nothing is that recent) answers after that record came.
        highs = {
            (tp.topic, tp.partition): self._consumer.get_watermark_offsets(tp, timeout=10.0)[1]
            for tp in wanted
        }
        starts = self._consumer.offsets_for_times(wanted, timeout=10.0)
        for tp in starts:
            high = highs[(tp.topic, tp.partition)]
            if tp.offset < 0 or tp.offset > high:
                tp.offset = high
            if tp.offset < high:
                self._ends[(tp.topic, tp.partition)] = high
        self._consumer.incremental_assign(starts)
        log.info("console reader: reading %d partitions", len(starts))

    def _fetch(self) -> Batch:
        """What one poll returns, and what else is already fetched (up to BATCH)."""
        batch = Batch()
        msg = self._consumer.poll(0.5)
        while msg is not None and len(batch) < BATCH:
            if msg.error() is None:
                where = (msg.topic() or "", msg.partition() or 0)
                end = self._ends.get(where)
                if end is not None and (msg.offset() or 0) + 1 >= end:
                    del self._ends[where]
                try:
                    self._read(msg, where, batch)
                except (PipelineError, ValueError) as exc:
                    self.on_skipped()
                    log.warning("console reader: skipping %s[%d]@%s: %s", *where, msg.offset(), exc)
            msg = self._consumer.poll(0)
        return batch

    def _read(self, msg: Any, where: tuple[str, int], batch: Batch) -> None:
        """One record into ``batch`` (or a session ended); raises when it does not decode."""
        topic, value = where[0], msg.value() or b""
        if topic == self.sessions_topic:
            self._session_ended(msg.key(), msg.value())
        elif topic == self.letters_topic:
            headers = tuple((k, v or b"") for k, v in msg.headers() or ())
            letter = decode_entry(self.serde, where[1], msg.offset() or 0, value, headers)
            original = None
            if letter.value:
                try:
                    original = self.serde.decode(letter.value)
                except PipelineError:
                    original = None  # an undecodable original: a letter all the same
            batch.letters.append((letter, original))
        elif topic == self.redrives_topic:
            batch.redriven.append(self._redrives.decode(value).dead_letter_id)
        else:
            batch.events.append(self.serde.decode(value))

    def _session_ended(self, key: bytes | str | None, value: bytes | None) -> None:
        """A sign-out read from the sessions topic (a tombstone ends nothing)."""
        if key is None or value is None:
            return
        sid = key.decode() if isinstance(key, bytes) else key
        try:
            self.ended.end(sid, read_ended_record(value))
        except ValueError as exc:
            self.on_skipped()
            log.warning("console reader: skipping a record of %s: %s", self.sessions_topic, exc)

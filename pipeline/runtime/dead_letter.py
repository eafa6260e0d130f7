"""Dead letters: the original record, kept whole, with where it came from and why it failed.

The value is a ``pipeline.events.DeadLetter`` record (single-object encoded); the Kafka
key is the original key, so a conversation's dead letters stay together. Headers repeat
the essentials in the form Spring Kafka's DeadLetterPublishingRecoverer uses, for tools
that only read headers.

Each dead letter carries an ``event-id`` header derived from where the record was and who
gave up on it (:func:`dead_letter_id`): a crash between writing a dead letter and
committing the source offset writes it again, and the repeat has the same id, so readers
and redrive can tell it is the same dead letter.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pipeline.events.catalog import DEAD_LETTER
from pipeline.events.model import utc_now
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.headers import EVENT_ID, EVENT_TYPE, Header, headers_of
from pipeline.runtime.ports import Record

DEAD_LETTER_NAMESPACE = uuid.UUID("3b0f5d2e-8c4a-5e71-9d26-7a1c4e9b0f53")


def dead_letter_id(topic: str, partition: int, offset: int, stage: str, service: str) -> str:
    """The dead letter's event id: a UUID 5 of its source coordinates, stage and service.

    The same record given up at the same stage by the same service always gets the same
    id; two services that consume one topic dead-letter a record each under their own.
    """
    name = "\x1f".join((topic, str(partition), str(offset), stage, service))
    return str(uuid.uuid5(DEAD_LETTER_NAMESPACE, name))


@dataclass(frozen=True, slots=True)
class Failure:
    stage: str  # decode | handler | delivery
    error: BaseException
    attempts: int
    service: str
    handler: str | None = None
    event_type: str | None = None
    conversation_id: str | None = None


def dead_letter_record(
    serde: SingleObjectSerde, msg: Record, failure: Failure
) -> tuple[bytes, list[Header]]:
    """Encoded DeadLetter value and headers for a failed record."""
    topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
    timestamp_type, timestamp = msg.timestamp()
    original_headers = headers_of(msg)
    error_type = type(failure.error).__name__
    error_message = str(failure.error) or error_type
    record = {
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "source_timestamp": timestamp if timestamp_type and timestamp >= 0 else None,
        "key": _as_bytes(msg.key()),
        "value": _as_bytes(msg.value()),
        "headers": [{"key": k, "value": v} for k, v in original_headers],
        "stage": failure.stage,
        "error_type": error_type,
        "error_message": error_message,
        "attempts": failure.attempts,
        "service": failure.service,
        "handler": failure.handler,
        "event_type": failure.event_type,
        "conversation_id": failure.conversation_id,
        "failed_at": utc_now(),
    }
    value = serde.encode_record(DEAD_LETTER, record)
    headers: list[Header] = [
        (EVENT_TYPE, DEAD_LETTER),
        (EVENT_ID, dead_letter_id(topic, partition, offset, failure.stage, failure.service)),
        ("content-type", serde.content_type),
        ("dlt-original-topic", topic),
        ("dlt-original-partition", str(partition)),
        ("dlt-original-offset", str(offset)),
        ("dlt-exception-fqcn", f"{type(failure.error).__module__}.{error_type}"),
        ("dlt-exception-message", error_message[:1000]),
        ("dlt-failure-stage", failure.stage),
        ("dlt-service", failure.service),
    ]
    return value, headers


def _as_bytes(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return value.encode()

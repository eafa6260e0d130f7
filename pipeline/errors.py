"""The error tree. Every error the package raises on purpose derives from PipelineError.

PipelineError
├── ConfigError            settings are missing or contradict each other
├── SchemaError            a schema file is invalid or cannot be resolved
├── SerdeError             bytes could not be turned into an event, or back
│   ├── UnknownSchemaError     the writer fingerprint is not among the known schemas
│   ├── CorruptEventError      the framing or the Avro body is damaged
│   └── RegistryUnavailableError  the schema registry did not answer for a new schema id
├── EventValidationError   a record does not match its schema (nothing is produced)
├── EventTypeError         a handled or emitted event type is unknown, or not declared
├── TopologyError          topic definitions are invalid or cannot be applied
│   └── UnsafeTopicChangeError  applying would shrink partitions or change cleanup.policy
├── HandlerError           raised around a handler failure after its retries ran out
├── BrokerUnavailableError the Kafka cluster did not answer in time
└── TransactionFencedError another instance took over this one's transactions (exactly-once)
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error raised by the pipeline package."""


class ConfigError(PipelineError):
    """Settings are missing, malformed or contradict each other."""


class SchemaError(PipelineError):
    """A schema file is invalid, or a schema could not be resolved."""


class SerdeError(PipelineError):
    """Bytes could not be decoded into an event, or an event encoded into bytes."""


class UnknownSchemaError(SerdeError):
    """The writer schema fingerprint is not among the schemas this reader knows.

    Deploy the newer schema files to this service before producers start writing them.
    """


class CorruptEventError(SerdeError):
    """The single-object framing or the Avro body is damaged."""


class RegistryUnavailableError(SerdeError):
    """The schema registry could not be asked for a writer schema this reader has not cached."""


class EventValidationError(PipelineError):
    """A record does not match its schema; nothing was produced."""


class EventTypeError(PipelineError):
    """An event type has no schema or no topic, or a handler emitted a type its service
    does not declare (``Service(..., emits=[...])``).

    At start-up the service exits; from ``ctx.emit`` the event is dead-lettered at once,
    without retries, since a retry emits the same type again.
    """


class TopologyError(PipelineError):
    """Topic definitions are invalid or could not be applied to the cluster."""


class UnsafeTopicChangeError(TopologyError):
    """Applying the definitions would shrink partitions or change a cleanup policy."""


class RejectEvent(PipelineError):
    """Raise from a handler to dead-letter the event at once, without retries.

    For failures a retry cannot fix (a channel answered 400). What the handler emitted
    before raising is still produced, so it can report the failure (a delivery status).
    """

    def __init__(self, reason: str, *, stage: str = "handler") -> None:
        super().__init__(reason)
        self.stage = stage


class BrokerUnavailableError(PipelineError):
    """The Kafka cluster did not answer within the configured timeout."""


class TransactionFencedError(PipelineError):
    """In exactly-once mode, a newer instance with the same transactional id (or the
    group, after a rebalance) fenced this one: it must not commit anything more, so it
    stops. Its open transaction is aborted; whatever it had not committed is handled by
    the instance that fenced it."""

"""The error tree. Every error the package raises on purpose derives from PipelineError,
and every one of them is defined here (tests/unit/test_exported_members.py checks both).

PipelineError
├── ConfigError            settings are missing or contradict each other
│   └── RulesError             the webhook rules file is missing or a rule is invalid
├── SchemaError            a schema file is invalid or cannot be resolved
├── SerdeError             bytes could not be turned into an event, or back
│   ├── UnknownSchemaError     the writer fingerprint is not among the known schemas
│   ├── CorruptEventError      the framing or the Avro body is damaged
│   └── RegistryUnavailableError  the schema registry did not answer for a new schema id
├── EventValidationError   a record does not match its schema (nothing is produced)
├── EventTypeError         a handled or emitted event type is unknown, or not declared
├── TopologyError          topic definitions are invalid or cannot be applied
│   └── UnsafeTopicChangeError  applying would shrink partitions or change cleanup.policy
├── RejectEvent            raised by a handler: dead-letter the event at once, no retries
├── BrokerUnavailableError the Kafka cluster did not answer in time
├── StateError             a state store's changelog
│   ├── StateRestoreError      could not be read to its end
│   └── StateNotReadyError     a handler asked for a partition not restored here
├── InboundRejected        a channel's inbound request is refused (status and reason)
├── OperatorActionRefused  an operator's console action is refused (status and reason)
├── EgressRefused          an outbound URL is refused by the egress policy
├── LLMError               the model could not be asked
├── ToolError              a tool's failure the model should see
│   └── CalculatorError        the expression is not plain arithmetic
├── TemplateError          a webhook rule's template names a missing field (a ValueError too)
├── DevKafkaError          the local development broker could not be fetched or started
├── StackError             the local stack (pipeline up, pipeline demo) could not start
├── TransactionFencedError another instance took over this one's transactions (exactly-once)
├── AbortableTransactionError  the open transaction must be aborted and its input read again
├── KafkaCallStuckError    a Kafka client call did not return within the runtime's deadline
├── ReplayError            a replay could not be set up (nothing recorded, Kafka unreadable)
│   └── EvaluationError        an evaluation could not be set up (a set file, a check, a limit)
└── DeadLetterError        a dead letter could not be read or redriven
    ├── UnknownDeadLetterError  no dead letter has that id
    ├── AlreadyRedriven         the letter was redriven before (nothing is produced again)
    └── RedriveConflictError    another redrive of the same letter took over this one
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error raised by the pipeline package."""


class ConfigError(PipelineError):
    """Settings are missing, malformed or contradict each other."""


class RulesError(ConfigError):
    """The rules file is missing, not YAML, or a rule is invalid; the message says where."""


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


class StateError(PipelineError):
    """Root of state store errors."""


class StateRestoreError(StateError):
    """A changelog could not be read to its end; the service stops rather than guess."""


class StateNotReadyError(StateError):
    """A handler asked for state of a partition this instance has not restored.

    The runtime restores on assignment, before any record of the partition is handled;
    seeing this means the subscribed topics and the changelog are not co-partitioned.
    """


class InboundRejected(PipelineError):
    """The request is refused with ``status`` (400, 401, 403, 404, 429) and a reason;
    ``retry_after`` (seconds) when trying again later may succeed."""

    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class OperatorActionRefused(PipelineError):
    """An operator's action in the console is refused with ``status`` (400, 403, 404, 409,
    413, 429, 503) and a reason; nothing was produced. ``retry_after`` (seconds) when
    trying again later may succeed."""

    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class EgressRefused(PipelineError):
    """An outbound URL was refused by the egress policy; nothing was sent."""


class LLMError(PipelineError):
    """The model could not be asked: a refused request, or the client's retries ran out.

    The agent answers with an apology at once: the client's retries are the only retries
    of a model call, never multiplied by the runtime's handler retries.
    """


class ToolError(PipelineError):
    """Raised by a tool for a failure the caller should see (bad arguments, no match).

    The message becomes the ``error`` of the tool_result, so say what was wrong.
    """


class CalculatorError(ToolError):
    """The expression is not plain arithmetic, too large, or has no finite value."""


class TemplateError(PipelineError, ValueError):
    """A template names a payload field that is missing or not a plain value."""


class DevKafkaError(PipelineError):
    """The local development broker could not be fetched, started or stopped."""


class StackError(PipelineError):
    """The local stack could not be started."""


class TransactionFencedError(PipelineError):
    """In exactly-once mode, a newer instance with the same transactional id (or the
    group, after a rebalance) fenced this one: it must not commit anything more, so it
    stops. Its open transaction is aborted; whatever it had not committed is handled by
    the instance that fenced it."""


class AbortableTransactionError(PipelineError):
    """In exactly-once mode, the open transaction failed in a way Kafka lets one recover
    from: the runtime aborts it and reads again from the committed offsets. Control flow
    inside the runtime; it never reaches a handler."""


class KafkaCallStuckError(PipelineError):
    """A blocking Kafka client call (a transaction call, a commit) did not return within
    the deadline the runtime enforces on top of the client's own timeout. The instance
    gives up its producer and stops without committing anything more (exit status 1), so
    its supervisor starts a fresh one; its open transaction is aborted by the new
    instance or by the transaction coordinator's timeout."""


class ReplayError(PipelineError):
    """A replay could not be set up: nothing recorded, or Kafka could not be read."""


class EvaluationError(ReplayError):
    """An evaluation could not be set up: a recorded set file that cannot be read, a check
    that cannot be loaded, a threshold that cannot be parsed; the message says which."""


class DeadLetterError(PipelineError):
    """A dead letter could not be read or redriven (Kafka unreadable, a redrive failed)."""


class UnknownDeadLetterError(DeadLetterError):
    """No dead letter has this id: the id is not ``<partition>:<offset>``, or no record of
    the dead-letter topic is there (never written, or past the topic's retention).
    ``pipeline dlq list`` shows the ids there are."""


class AlreadyRedriven(DeadLetterError):
    """The dead letter was redriven before, by ``operator`` at ``redriven_at``: a letter
    is redriven once, so nothing was produced. Its copy written again after a crash (same
    event id) counts as the same letter."""

    def __init__(self, letter_id: str, operator: str, redriven_at: object) -> None:
        super().__init__(
            f"dead letter {letter_id} was already redriven by {operator} at {redriven_at}; "
            "nothing was produced"
        )
        self.letter_id = letter_id
        self.operator = operator
        self.redriven_at = redriven_at


class RedriveConflictError(DeadLetterError):
    """Another process started a redrive of the same letter while this one ran and fenced
    it; this one produced nothing. ``pipeline dlq show`` tells whether the other finished."""

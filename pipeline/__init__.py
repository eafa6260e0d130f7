"""Event-driven backbone for AI agents and chatbots on Apache Kafka.

Start from :class:`Service`: register an ``async def (event, ctx)`` per event type and
run it; the runtime owns ordering, concurrency, commits, retries and dead letters. A tool
function may ask for its call's :class:`ToolContext` (see :mod:`pipeline.toolbox`).
"""

from pipeline.config import Settings
from pipeline.errors import (
    AbortableTransactionError,
    AlreadyRedriven,
    BrokerUnavailableError,
    CalculatorError,
    ConfigError,
    CorruptEventError,
    DeadLetterError,
    DevKafkaError,
    EgressRefused,
    EvaluationError,
    EventTypeError,
    EventValidationError,
    InboundRejected,
    KafkaCallStuckError,
    LLMError,
    OperatorActionRefused,
    PipelineError,
    RedriveConflictError,
    RegistryUnavailableError,
    RejectEvent,
    ReplayError,
    RulesError,
    SchemaError,
    SerdeError,
    StackError,
    StateError,
    StateNotReadyError,
    StateRestoreError,
    TemplateError,
    ToolError,
    TopologyError,
    TransactionFencedError,
    UnknownDeadLetterError,
    UnknownSchemaError,
    UnsafeTopicChangeError,
)
from pipeline.events.catalog import SchemaCatalog
from pipeline.events.model import Event, Metadata
from pipeline.events.serde import SingleObjectSerde
from pipeline.runtime.context import Context
from pipeline.runtime.publisher import Publisher
from pipeline.runtime.service import Service
from pipeline.tool_context import ToolContext

__version__ = "0.1.0"

__all__ = [
    "AbortableTransactionError",
    "AlreadyRedriven",
    "BrokerUnavailableError",
    "CalculatorError",
    "ConfigError",
    "Context",
    "CorruptEventError",
    "DeadLetterError",
    "DevKafkaError",
    "EgressRefused",
    "EvaluationError",
    "Event",
    "EventTypeError",
    "EventValidationError",
    "InboundRejected",
    "KafkaCallStuckError",
    "LLMError",
    "Metadata",
    "OperatorActionRefused",
    "PipelineError",
    "Publisher",
    "RedriveConflictError",
    "RegistryUnavailableError",
    "RejectEvent",
    "ReplayError",
    "RulesError",
    "SchemaCatalog",
    "SchemaError",
    "SerdeError",
    "Service",
    "Settings",
    "SingleObjectSerde",
    "StackError",
    "StateError",
    "StateNotReadyError",
    "StateRestoreError",
    "TemplateError",
    "ToolContext",
    "ToolError",
    "TopologyError",
    "TransactionFencedError",
    "UnknownDeadLetterError",
    "UnknownSchemaError",
    "UnsafeTopicChangeError",
    "__version__",
]

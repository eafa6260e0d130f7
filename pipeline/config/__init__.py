"""Settings, read once from the environment (prefix ``PIPELINE_``) and passed down.

Kafka client settings pass through unchanged: ``PIPELINE_KAFKA__SASL_USERNAME=me``
becomes the librdkafka setting ``sasl.username``. Their values are secrets by default
and never appear when settings are printed or logged, nor does any value appear in a
settings error: :func:`load_settings` names the setting and what is wrong with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from pipeline.config.client_check import client_problems
from pipeline.config.env_names import unknown_variables
from pipeline.config.sections import (
    AgentSettings,
    ConsoleSettings,
    DeliverySettings,
    GatewaySettings,
    HttpServerSettings,
    LLMSettings,
    SchedulerSettings,
    SchemaRegistrySettings,
    ToolsSettings,
    WebhooksSettings,
)
from pipeline.errors import ConfigError

# Settings the runtime owns; passing them through would break its guarantees.
_RESERVED_CLIENT_SETTINGS = frozenset(
    {
        "enable.auto.commit",
        "enable.auto.offset.store",
        "group.id",
        "partition.assignment.strategy",
        "bootstrap.servers",
    }
)


class Settings(BaseSettings):
    """Every knob of a pipeline service. Build once at start and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="PIPELINE_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="librdkafka settings passed through (PIPELINE_KAFKA__SASL_USERNAME=...).",
    )
    consumer: dict[str, SecretStr] = Field(
        default_factory=dict, description="librdkafka settings for consumers only."
    )
    producer: dict[str, SecretStr] = Field(
        default_factory=dict, description="librdkafka settings for producers only."
    )
    assignment_strategy: str = Field(
        "cooperative-sticky", description="Consumer partition.assignment.strategy."
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a consumer group without committed offsets starts: 'earliest' "
        "(every record still in the topic) or 'latest' (only records written from now).",
    )
    topic_prefix: str = Field("", description="Prefix for every topic and consumer group name.")
    service_name: str | None = Field(
        None, description="Overrides the service's own name (consumer group, metric labels)."
    )
    schemas_dir: Path | None = Field(
        None, description="Replaces the bundled Avro schemas folder (default: bundled)."
    )
    topics_dir: Path | None = Field(
        None, description="Replaces the bundled topic definitions folder (default: bundled)."
    )
    extra_schema_dirs: Annotated[tuple[Path, ...], NoDecode] = Field(
        (),
        description="Folders of your own Avro schemas, added to the bundled ones "
        "(os.pathsep-separated, or a JSON list).",
    )
    extra_topic_dirs: Annotated[tuple[Path, ...], NoDecode] = Field(
        (),
        description="Folders of your own topic definitions, added to the bundled ones "
        "(os.pathsep-separated, or a JSON list).",
    )

    wire_format: Literal["single-object", "confluent"] = Field(
        "single-object",
        description="How event values are framed: Avro single-object encoding (no registry) "
        "or the Confluent wire format (0, 4-byte schema id, body) with a schema registry.",
    )
    schema_registry: SchemaRegistrySettings = Field(
        default_factory=SchemaRegistrySettings,
        description="The schema registry of the confluent wire format.",
    )

    max_in_flight: int = Field(256, ge=1, description="Events handled at once per process.")
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto",
        description="The event loop a service runs on: auto (uvloop when installed, else "
        "asyncio's), uvloop (refused at start when not installed) or asyncio.",
    )
    max_buffered_per_partition: int = Field(
        2000, ge=1, description="Events fetched but unfinished per partition before it pauses."
    )
    max_retries: int = Field(3, ge=0, description="Handler retries before dead-lettering.")
    retry_backoff_initial_seconds: float = Field(
        0.2,
        gt=0,
        description="Wait before a failed handler's first retry; it doubles on each retry "
        "(with jitter) up to retry_backoff_max_seconds.",
    )
    retry_backoff_max_seconds: float = Field(
        10.0, gt=0, description="Longest wait between two attempts of a handler."
    )
    drain_timeout_seconds: float = Field(
        30.0, gt=0, description="Deadline to finish in-flight work on revoke and shutdown."
    )
    commit_interval_seconds: float = Field(1.0, gt=0, description="How often offsets commit.")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="at_least_once (a crash can repeat outputs) or exactly_once (outputs, "
        "state changelog writes and offsets commit in one Kafka transaction per commit "
        "interval; read them with isolation.level=read_committed).",
    )
    instance_id: str | None = Field(
        None,
        description="A stable name for this instance (a pod name). In exactly_once mode it "
        "names the transactional id, so a restarted instance fences its predecessor and "
        "aborts its open transaction at once. Default: host name and process id.",
    )
    dead_letter_topic: str = Field("dead_letters", description="Topic for dead letters.")
    topic_replication_factor: int | None = Field(
        None, ge=1, description="Overrides every definition's replication factor (1 for dev)."
    )

    metrics_host: str = Field("0.0.0.0", description="Address of /metrics, /healthz, /readyz.")
    metrics_port: int = Field(8000, ge=0, le=65535, description="0 disables the HTTP endpoint.")
    log_level: str = Field(
        "INFO", description="Level of the process's root logger (DEBUG, INFO, WARNING, ...)."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text, or json: one object per line with trace_id, span_id, "
        "conversation_id and event_id on the lines a handler writes.",
    )
    journal_sweep_seconds: float = Field(
        30.0,
        gt=0,
        description="How often a service's journal of outside calls tombstones the "
        "conversations whose steps all belong to committed events (so its compacted topic "
        "keeps only what may still be needed).",
    )
    kafka_call_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="In exactly_once mode, how long a transaction call (init, send offsets, "
        "commit, abort) may take. librdkafka is given this timeout and the runtime enforces "
        "it too: a call still running 5 s past it makes the instance give up its producer "
        "and exit with status 1, for its supervisor to restart it.",
    )
    liveness_stuck_seconds: float = Field(
        120.0,
        gt=0,
        description="/healthz fails when a Kafka call (a fetch, a commit, a transaction call) "
        "has not returned for this long, or the poll loop has not advanced for this long "
        "outside a rebalance, so a liveness probe restarts the process.",
    )
    broker_down_not_ready_seconds: float = Field(
        15.0,
        gt=0,
        description="A consumer service whose connection to Kafka has been down this long "
        "answers /readyz with 503 (until it is back).",
    )

    gateway: GatewaySettings = Field(
        default_factory=GatewaySettings,
        description="The gateway: HTTP listener, channel credentials, tenants, input limits, "
        "browser chat and streams.",
    )
    delivery: DeliverySettings = Field(
        default_factory=DeliverySettings,
        description="The delivery service: channel APIs, SMTP, retries, concurrency, "
        "what an uncertain send does, web callback signing and egress.",
    )
    llm: LLMSettings = Field(
        default_factory=LLMSettings,
        description="The agent's language model: provider, endpoint, model and retries.",
    )
    agent: AgentSettings = Field(
        default_factory=AgentSettings,
        description="The agent: history, tool loop, follow-ups, state, handoff and approvals.",
    )
    tools: ToolsSettings = Field(
        default_factory=ToolsSettings,
        description="The tools service (timeouts, plugins, MCP servers, HTTP tools) and the "
        "tool catalog the agent reads.",
    )
    scheduler: SchedulerSettings = Field(
        default_factory=SchedulerSettings, description="The scheduler of durable timers."
    )
    webhooks: WebhooksSettings = Field(
        default_factory=WebhooksSettings,
        description="The webhooks service: its rules and the record of handled deliveries.",
    )
    console: ConsoleSettings = Field(
        default_factory=ConsoleSettings,
        description="The operator console: listener, operators, sessions and its live view.",
    )
    http: HttpServerSettings = Field(
        default_factory=HttpServerSettings,
        description="The HTTP servers of the gateway and the console: header and keep-alive "
        "timeouts, the connection cap, trusted proxies.",
    )

    @field_validator("kafka", "consumer", "producer", mode="before")
    @classmethod
    def _normalise_client_keys(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        normalised = {str(k).lower().replace("_", "."): v for k, v in value.items()}
        reserved = sorted(_RESERVED_CLIENT_SETTINGS & normalised.keys())
        if reserved:
            raise ValueError(
                f"{', '.join(reserved)} cannot be passed through: the runtime sets them "
                "(use PIPELINE_BOOTSTRAP_SERVERS for the servers)"
            )
        return normalised

    @field_validator("extra_schema_dirs", "extra_topic_dirs", mode="before")
    @classmethod
    def _split_folder_list(cls, value: Any) -> Any:
        """``a:b`` (like PATH) or a JSON list, as the environment gives it."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part for part in text.split(os.pathsep) if part.strip()]

    @model_validator(mode="after")
    def _registry_for_confluent(self) -> Settings:
        if self.wire_format == "confluent" and not self.schema_registry.url:
            raise ValueError(
                "wire_format confluent needs a schema registry: set PIPELINE_SCHEMA_REGISTRY__URL"
            )
        return self

    def resource_dir(self, name: str) -> Path:
        """The ``schemas`` or ``topics`` folder: configured, bundled, or the source tree's."""
        configured = {"schemas": self.schemas_dir, "topics": self.topics_dir}[name]
        return configured if configured is not None else bundled_dir(name)

    def schema_dirs(self) -> tuple[Path, ...]:
        """The schemas folder (bundled or replaced) followed by the extra ones."""
        return (self.resource_dir("schemas"), *self.extra_schema_dirs)

    def topic_dirs(self) -> tuple[Path, ...]:
        """The topics folder (bundled or replaced) followed by the extra ones."""
        return (self.resource_dir("topics"), *self.extra_topic_dirs)

    def topic(self, name: str) -> str:
        """The physical topic name for a logical topic or event type."""
        return f"{self.topic_prefix}{name}"

    def client_config(self) -> dict[str, str]:
        """Settings common to every Kafka client: servers plus the passthrough."""
        return {"bootstrap.servers": self.bootstrap_servers, **_reveal(self.kafka)}

    def consumer_config(self) -> dict[str, str]:
        """client_config plus the consumer-only passthrough."""
        return {**self.client_config(), **_reveal(self.consumer)}

    def producer_config(self) -> dict[str, str]:
        """client_config plus the producer-only passthrough."""
        return {**self.client_config(), **_reveal(self.producer)}


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, or :class:`ConfigError` naming every bad setting.

    Unknown ``PIPELINE_*`` variables are refused with the nearest real name, and the
    librdkafka passthrough is checked by librdkafka. The error says which variable is
    wrong and why, never its value: a value may be a password
    (``PIPELINE_KAFKA__SASL_PASSWORD``) and errors end up in logs. ``overrides`` are
    fields given directly (command-line options), checked the same way.
    """
    problems = unknown_variables(os.environ, Settings)
    if problems:
        raise ConfigError(_reason(problems))
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(settings_error_reason(exc)) from None
    except SettingsError as exc:
        # pydantic-settings' own message names the field and the source, not the value.
        raise ConfigError(f"invalid PIPELINE_* settings: {exc}") from None
    problems = client_problems(settings.kafka, settings.consumer, settings.producer)
    if problems:
        raise ConfigError(_reason(problems))
    return settings


def settings_error_reason(exc: ValidationError) -> str:
    """One line per problem: the variable and what is wrong, without the input."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = "__".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"PIPELINE_{where or '*'}: {message}")
    return _reason(problems)


def _reason(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"invalid setting {problems[0]}"
    return "invalid PIPELINE_* settings:\n  " + "\n  ".join(problems)


def bundled_dir(name: str) -> Path:
    """Folder shipped with the package (wheel) or, in a source checkout, the repo's own."""
    package_root = Path(__file__).resolve().parent.parent
    bundled = package_root / "_data" / name
    return bundled if bundled.is_dir() else package_root.parent / name


def _reveal(secrets: dict[str, SecretStr]) -> dict[str, str]:
    return {k: v.get_secret_value() for k, v in secrets.items()}

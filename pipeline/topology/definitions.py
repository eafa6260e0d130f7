"""What a topic is: one definition per ``topics/<name>.yaml``, and the set of them.

:class:`TopicDefinition` is a pydantic dataclass: building one, from a file's mapping
(:func:`parse_definition`) or in code, validates every field strictly, so a definition
that exists is a valid one; it is frozen once built. :func:`parse_definition` turns
pydantic's errors into one TopologyError naming the file and each wrong field. A
:class:`Topology` is every definition of a deployment, sorted by name.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import ErrorDetails

from pipeline.errors import TopologyError

__all__ = ["TopicDefinition", "TopicKind", "Topology", "parse_definition"]

TopicKind = Literal["conversation", "changelog", "internal"]

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def _topic_name(name: str) -> str:
    if not _TOPIC_NAME.match(name):
        raise ValueError(f"invalid topic name {name!r} (letters, digits, . _ -)")
    return name


def _avro_full_name(name: str) -> str:
    if not _SCHEMA_NAME.match(name):
        raise ValueError(
            "value_schema must be an Avro full name such as "
            f"pipeline.events.MessageReceived, not {name!r}"
        )
    return name


def _read_only(configs: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(configs))


# Strict: YAML already gives typed values, so `partitions: "12"` or `partitions: true` is a
# mistake in the file, not 12 or 1; and Kafka topic configs are strings, quoted in YAML.
_Text = Annotated[str, Strict()]
_Count = Annotated[int, Strict(), Field(ge=1)]

# The default of co_partitioned, told apart from an explicit (invalid) `co_partitioned: null`.
_BY_KIND: Any = object()


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class TopicDefinition:
    """One topic as ``topics/<name>.yaml`` describes it (logical name, before any prefix).

    ``co_partitioned`` defaults to whether the topic is a ``conversation`` topic (those
    always are). A conversation topic needs a ``value_schema``; ``min.insync.replicas``,
    when set, is a number no larger than ``replication_factor``.
    """

    name: Annotated[str, Strict(), AfterValidator(_topic_name)]
    kind: TopicKind
    partitions: _Count
    replication_factor: _Count
    key: _Text
    doc: _Text
    value_schema: Annotated[str, Strict(), AfterValidator(_avro_full_name)] | None = None
    co_partitioned: Annotated[bool, Strict()] = Field(default=_BY_KIND, validate_default=True)
    configs: Annotated[Mapping[_Text, _Text], AfterValidator(_read_only)] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    @field_validator("co_partitioned", mode="before")
    @classmethod
    def _co_partitioned_by_kind(cls, value: object, info: ValidationInfo) -> object:
        return info.data.get("kind") == "conversation" if value is _BY_KIND else value

    @field_validator("configs", mode="before")
    @classmethod
    def _no_configs(cls, value: object) -> object:
        return {} if value is None else value  # `configs:` with nothing under it

    @model_validator(mode="after")
    def _consistent(self) -> TopicDefinition:
        problems = []
        if self.kind == "conversation" and not self.co_partitioned:
            problems.append("conversation topics are always co-partitioned")
        if self.kind == "conversation" and self.value_schema is None:
            problems.append("conversation topics need a value_schema")
        insync = self.configs.get("min.insync.replicas")
        if insync is not None and (not insync.isdigit() or int(insync) > self.replication_factor):
            problems.append(
                f"min.insync.replicas {insync!r} must be a number no larger than "
                f"replication_factor ({self.replication_factor})"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def with_replication_factor(self, replication_factor: int) -> TopicDefinition:
        """This definition with another replication factor, ``min.insync.replicas`` capped."""
        configs = dict(self.configs)
        if "min.insync.replicas" in configs:
            capped = min(int(configs["min.insync.replicas"]), replication_factor)
            configs["min.insync.replicas"] = str(capped)
        return replace(
            self, replication_factor=replication_factor, configs=MappingProxyType(configs)
        )


@dataclass(frozen=True)
class Topology:
    """Every topic definition, sorted by name."""

    topics: tuple[TopicDefinition, ...]

    def __iter__(self) -> Iterator[TopicDefinition]:
        return iter(self.topics)

    def __len__(self) -> int:
        return len(self.topics)

    def __getitem__(self, name: str) -> TopicDefinition:
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(topic.name for topic in self.topics)

    @property
    def co_partition_count(self) -> int | None:
        """The partition count shared by co-partitioned topics (None if there are none)."""
        counts = {t.partitions for t in self.topics if t.co_partitioned}
        return counts.pop() if counts else None

    def with_replication_factor(self, replication_factor: int | None) -> Topology:
        """Every definition with this replication factor (None: unchanged)."""
        if replication_factor is None:
            return self
        return Topology(tuple(t.with_replication_factor(replication_factor) for t in self))


_ADAPTER = TypeAdapter(TopicDefinition)
_KEYS = tuple(sorted(f.name for f in dataclasses.fields(TopicDefinition)))
_UNKNOWN_KEY = frozenset({"unexpected_keyword_argument", "invalid_key"})  # invalid: not a string
_EXPECTED = {
    "int_type": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "dict_type": "a mapping of Kafka topic configs",  # configs is the only mapping
}


def parse_definition(raw: object, source: str) -> TopicDefinition:
    """The definition that ``raw`` (a file's parsed YAML) describes.

    Raises TopologyError ``"<source>: <problem>; <problem>..."`` naming every unknown or
    missing key and every wrong field at once.
    """
    if not isinstance(raw, dict):
        raise TopologyError(f"{source}: expected a mapping of topic settings")
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise TopologyError(f"{source}: {_describe(exc.errors())}") from None


def _describe(errors: list[ErrorDetails]) -> str:
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] in _UNKNOWN_KEY)
    missing = sorted(str(e["loc"][0]) for e in errors if e["type"] == "missing")
    problems = []
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(_KEYS)})")
    if missing:
        problems.append(f"missing key(s) {', '.join(missing)}")
    problems += [_describe_one(e) for e in errors if e["type"] not in {*_UNKNOWN_KEY, "missing"}]
    return "; ".join(problems)


def _describe_one(error: ErrorDetails) -> str:
    loc, value, ctx = error["loc"], error["input"], error.get("ctx", {})
    if error["type"] == "value_error":  # the validators above say it in their own words
        return str(ctx["error"])
    if loc[:1] == ("configs",) and len(loc) == 3:  # ("configs", key, "[key]")
        return f"config key {value!r} must be a string"
    if loc[:1] == ("configs",) and len(loc) == 2:
        return (
            f'config {loc[1]!r} must be a quoted string ("{value}"), '
            "as Kafka topic configs are strings"
        )
    where = ".".join(str(part) for part in loc)
    if error["type"] == "greater_than_equal":
        return f"{where} must be at least {ctx['ge']}, not {value!r}"
    if error["type"] == "literal_error":
        return f"{where} {value!r} is not one of {ctx['expected']}"
    if error["type"] in _EXPECTED:
        return f"{where} must be {_EXPECTED[error['type']]}, not {value!r}"
    return f"{where}: {error['msg']}, not {value!r}"

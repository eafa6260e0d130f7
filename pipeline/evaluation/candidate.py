"""The agent version an evaluation replays: a service, and settings changed for it.

A candidate is a service spec (``agent``, or ``module.path:attribute`` naming a service or
a factory taking the settings) and overrides of the settings it is built with, by dotted
name (``llm.model=gpt-4o``, ``llm.system_prompt=...``, ``agent.approval_tools={"*":
["refund"]}``, ``tools.tenant_tools=...``): a new model, prompt, tool offer or rule judged
on recorded conversations before it ships. A value is read as JSON when it is JSON, else
as text; the settings are checked as at start.

A factory that takes a ``tools`` argument (as :func:`pipeline.services.agent.build` does)
is given the tool offer the evaluation read from the tool catalog once, instead of each
replay reading the catalog again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from pipeline.config import Settings, settings_error_reason
from pipeline.errors import ConfigError
from pipeline.runtime.service import Service
from pipeline.services import load_service
from pipeline.toolbox.tool_offer import ToolOffer

# What a replay does not need of a service that runs for real: a handful of events of one
# conversation are in flight at once, and the settle loop is the only reader.
REPLAY_SETTINGS: dict[str, Any] = {"max_in_flight": 8}


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["llm.model=gpt-4o", "agent.max_tool_depth=2"]`` as nested settings."""
    nested: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        path = [part for part in name.strip().split(".") if part]
        if not sep or not path:
            raise ConfigError(f"override {item!r} is not NAME=VALUE (llm.model=gpt-4o)")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        level = nested
        for part in path[:-1]:
            level = level.setdefault(part, {})
            if not isinstance(level, dict):
                raise ConfigError(f"override {item!r} sets a field inside {part!r}, a value")
        level[path[-1]] = value
    return nested


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in changes.items():
        old = merged.get(name)
        if isinstance(old, Mapping) and isinstance(value, Mapping) and old:
            merged[name] = _merged(old, value)
        else:
            merged[name] = value
    return merged


@dataclass(frozen=True, slots=True)
class Candidate:
    """A service spec and the settings overrides it is replayed with."""

    spec: str = "agent"
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How reports name it: the spec, then the overrides."""
        if not self.overrides:
            return self.spec
        return f"{self.spec} with {json.dumps(self.overrides, sort_keys=True)}"

    def settings(self, base: Settings, also: Mapping[str, Any] | None = None) -> Settings:
        """``base`` with the overrides (and ``also``), checked; ConfigError naming what is
        wrong."""
        changes = _merged(_merged(dict(self.overrides), also or {}), REPLAY_SETTINGS)
        try:
            return type(base).model_validate(_merged(base.model_dump(), changes))
        except ValidationError as exc:
            raise ConfigError(settings_error_reason(exc)) from None

    def build(self, settings: Settings, tools: ToolOffer | None) -> Service:
        """A fresh service of the spec with ``settings``."""
        service = load_service(self.spec, settings, tools=tools)
        if not isinstance(service, Service) or not service.handlers:
            raise ConfigError(f"{self.spec} is not a service with handlers: nothing to replay")
        return service

"""Webhook rules: match a source, its event name and payload fields; say what to emit.

The rules file is YAML::

    rules:
      - name: ticket-resolved
        source: zendesk              # the webhook source (POST /webhooks/zendesk)
        event: ticket.resolved       # the source's event name; "*" matches any
        when:                        # optional: dotted payload paths and wanted values
          ticket.channel: [web, slack]     # a list means "one of"
        conversation: "{ticket.conversation_id}"  # optional; default: the webhook's own
        facts:                       # merged into the conversation's context
          ticket_id: "{ticket.id}"
          ticket_status: resolved
        proactive_message: >-
          Your ticket #{ticket.id} was marked as resolved. Is the issue solved for you?

Templates replace ``{dotted.path}`` with the payload's value at that path, or with the
fallback in ``{dotted.path|fallback}`` when there is none (``{{`` and ``}}`` are literal
braces); nothing else is evaluated. ``source`` and ``event`` may be ``"*"`` (any). Rules
are tried in order and the first that matches wins. A rule whose template names a
missing field without a fallback does not apply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.errors import RulesError, TemplateError

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
Scalar = str | int | float | bool | None


class Rule(BaseModel):
    """One rule of the rules file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    source: str = Field(min_length=1)
    event: str = Field(min_length=1)
    emit: Literal["context_updated"] = "context_updated"
    when: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    conversation: str | None = None
    facts: dict[str, str] = Field(default_factory=dict)
    proactive_message: str | None = None

    @field_validator("when")
    @classmethod
    def _paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        for path in value:
            if not _PATH.match(path):
                raise ValueError(f"{path!r} is not a dotted payload path such as ticket.status")
        return value

    @field_validator("facts", mode="before")
    @classmethod
    def _facts_as_text(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                str(k): v if isinstance(v, str) else _text(v) if _is_scalar(v) else v
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _templates(self) -> Rule:
        for template in [self.conversation, self.proactive_message, *self.facts.values()]:
            if template is not None:
                check_template(template)
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.source}/{self.event}"

    def matches(self, source: str, event: str, payload: Any) -> bool:
        if self.source not in ("*", source) or self.event not in ("*", event):
            return False
        for path, wanted in self.when.items():
            found, value = lookup(payload, path)
            if not found:
                return False
            options = wanted if isinstance(wanted, list) else [wanted]
            if not any(_equal(value, option) for option in options):
                return False
        return True

    def apply(self, payload: Any) -> Outcome:
        """The rendered outcome; TemplateError if a named field is missing."""
        return Outcome(
            rule=self.label,
            conversation_id=render(self.conversation, payload) if self.conversation else None,
            facts={k: render(v, payload) for k, v in self.facts.items()},
            proactive_message=(
                render(self.proactive_message, payload) if self.proactive_message else None
            ),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a matching rule asks for."""

    rule: str
    conversation_id: str | None
    facts: dict[str, str]
    proactive_message: str | None


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Rule] = Field(default_factory=list)


class RuleSet:
    """Rules in file order; :meth:`first_match` picks the rule for a webhook."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    @classmethod
    def load(cls, path: Path) -> RuleSet:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError(f"cannot read the webhook rules file {path}: {exc}") from exc
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, origin: str = "rules") -> RuleSet:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RulesError(f"{origin} is not valid YAML: {exc}") from exc
        if data is None or data == {}:
            return cls([])
        if not isinstance(data, Mapping):
            raise RulesError(f"{origin}: expected a mapping with a 'rules' list at the top")
        try:
            parsed = _File.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise RulesError(f"{origin} has invalid rules: {problems}") from None
        return cls(parsed.rules)

    def first_match(self, source: str, event: str, payload: Any) -> Rule | None:
        return next((r for r in self.rules if r.matches(source, event, payload)), None)

    def __len__(self) -> int:
        return len(self.rules)


def lookup(payload: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at a dotted path; digits index into lists (``items.0.id``)."""
    value = payload
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def check_template(template: str) -> None:
    """Raise ValueError for a placeholder that is not a dotted path, or a lone brace."""
    for match in _PLACEHOLDER.finditer(template):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        path = (match.group(1) or "").partition("|")[0].strip()
        if match.group(1) is None or not _PATH.match(path):
            raise ValueError(
                f"bad placeholder {token!r} in {template!r}: use {{dotted.path}} or "
                "{dotted.path|fallback}, and {{ or }} for literal braces"
            )


def render(template: str, payload: Any) -> str:
    """Replace ``{dotted.path}`` with the payload's plain value there, or the fallback of
    ``{dotted.path|fallback}``; TemplateError when there is neither."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        path, bar, fallback = (match.group(1) or "").partition("|")
        found, value = lookup(payload, path.strip())
        if not found or value is None:
            if bar:
                return fallback
            raise TemplateError(f"the payload has no value at {path.strip()!r}")
        if not _is_scalar(value):
            raise TemplateError(f"the payload value at {path!r} is not a plain value")
        return _text(value)

    return _PLACEHOLDER.sub(substitute, template)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _equal(value: Any, wanted: Any) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted
    if isinstance(value, int | float) and isinstance(wanted, int | float):
        return value == wanted
    return _is_scalar(value) and _text(value) == _text(wanted)

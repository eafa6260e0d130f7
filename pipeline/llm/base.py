"""The provider interface: a chat request goes in, a completion (text or tool calls) comes out.

Providers are stateless about conversations: the agent builds each request from the
conversation's state (history, facts, the current turn's tool calls and results) and
decides what to do with the completion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import jsonschema

Role = Literal["user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: its name, what it does, and a JSON Schema of arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]

    def argument_problems(self, arguments: Mapping[str, Any]) -> list[str]:
        """Every way ``arguments`` do not fit :attr:`parameters`, each as ``path: message``
        (empty when they fit). Raises ``jsonschema.SchemaError`` for an invalid schema."""
        validator = jsonschema.validators.validator_for(self.parameters)(dict(self.parameters))
        return sorted(
            f"{'/'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}"
            for e in validator.iter_errors(arguments)
        )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for ``name`` to run with ``arguments``; ``id`` pairs it with its result."""

    id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the conversation as a model sees it.

    ``assistant`` messages may carry ``tool_calls`` instead of text; ``tool`` messages carry
    a result (JSON text) and the ``tool_call_id`` and ``name`` of the call they answer.
    """

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """Everything a provider needs for one completion."""

    messages: tuple[ChatMessage, ...]
    system: str = ""
    facts: Mapping[str, str] = field(default_factory=dict)
    tools: tuple[ToolSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Completion:
    """The model's answer: ``text`` for the user, or ``tool_calls`` to run first."""

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None


class LLMProvider(Protocol):
    """What the agent calls. ``complete`` raises LLMError when no answer can be had."""

    name: str
    model: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def aclose(self) -> None: ...

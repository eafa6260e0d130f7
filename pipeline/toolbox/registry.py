"""The tool registry: what a tool is and how it is registered.

The registry a tools service runs is built from its settings in
:mod:`pipeline.toolbox.assembly`. What a tool's ``guarantee`` means is
:mod:`pipeline.toolbox.guarantee`; what a tool function may ask for besides its
arguments, :mod:`pipeline.tool_context`.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema

from pipeline.errors import ConfigError
from pipeline.tool_context import ToolContext
from pipeline.toolbox.guarantee import KEYED, Guarantee, checked_guarantee

ToolFunction = Callable[..., Awaitable[Any] | Any]
"""``fn(arguments)``, ``fn(arguments, context)`` or ``fn(arguments, *, context)``, plain or
``async``; see :func:`context_parameter`."""

ContextParameter = Literal["positional", "keyword"] | None

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Tool:
    """A named function of a JSON object.

    ``parameters`` is the JSON Schema of the arguments object, as LLM tool calling
    expects it. ``fn`` may be ``async`` (preferred) or plain; a plain function runs in
    a worker thread so it cannot block the service. ``fn`` receives the arguments, and
    the call's :class:`~pipeline.tool_context.ToolContext` too when it asks for it
    (a second positional parameter, or a keyword-only ``context``). ``source`` says
    where the tool came from (``builtin``, ``plugin:<entry point>``, ``mcp:<server>``,
    ``http``); the tool catalog shows it, so a clash of names can say which two sources
    collided. ``guarantee`` says what running it again for one call does
    (:mod:`pipeline.toolbox.guarantee`); the catalog advertises it.
    """

    name: str
    description: str
    fn: ToolFunction
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    source: str = "code"
    guarantee: Guarantee = KEYED
    _context: ContextParameter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(
                f"tool name {self.name!r} is invalid: use lowercase letters, digits and "
                "underscores, starting with a letter (at most 64 characters)"
            )
        check_parameters(self.name, self.parameters)
        checked_guarantee(self.name, self.guarantee)
        object.__setattr__(self, "_context", context_parameter(self.fn))

    async def __call__(
        self, arguments: Mapping[str, Any], context: ToolContext | None = None
    ) -> Any:
        """Run the tool; ``context`` is the call's (a :meth:`ToolContext.standalone` one
        when None), passed on when the function asks for it."""
        args: tuple[Any, ...] = (arguments,)
        kwargs: dict[str, Any] = {}
        if self._context is not None:
            context = context or ToolContext.standalone(self.name)
            if self._context == "positional":
                args = (arguments, context)
            else:
                kwargs = {"context": context}
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(*args, **kwargs)
        result = await asyncio.to_thread(self.fn, *args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    def spec(self) -> dict[str, Any]:
        """The tool as an OpenAI-style function description."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }


def context_parameter(fn: ToolFunction) -> ContextParameter:
    """How ``fn`` asks for the call's context: ``"keyword"`` for a keyword-only parameter
    named ``context``, ``"positional"`` for a second positional parameter, None when it
    takes the arguments alone (or its signature cannot be read)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a built-in without a readable signature
        return None
    if any(p.kind is p.KEYWORD_ONLY and p.name == "context" for p in parameters):
        return "keyword"
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return "positional" if len(positional) >= 2 else None


def check_parameters(name: str, parameters: Any) -> None:
    """Refuse arguments that are not a JSON Schema of an object (ConfigError naming the tool)."""
    if not isinstance(parameters, Mapping) or parameters.get("type") != "object":
        raise ConfigError(
            f'the parameters of tool {name!r} must be a JSON Schema with "type": "object"'
        )
    try:
        jsonschema.validators.validator_for(parameters).check_schema(dict(parameters))
    except jsonschema.SchemaError as exc:
        raise ConfigError(
            f"the parameters of tool {name!r} are not a valid JSON Schema: {exc.message}"
        ) from None


def tool(
    name: str,
    description: str,
    properties: Mapping[str, Any] | None = None,
    *,
    guarantee: Guarantee = KEYED,
) -> Callable[[ToolFunction], Tool]:
    """Decorate a function of the arguments object into a :class:`Tool`.

    ``properties`` are the JSON Schema properties of the arguments; all are required.
    ``guarantee`` is what running it again for one call does (``keyed`` unless said).
    """

    def wrap(fn: ToolFunction) -> Tool:
        props = dict(properties or {})
        parameters = {"type": "object", "properties": props, "required": sorted(props)}
        return Tool(name, description, fn, parameters, guarantee=guarantee)

    return wrap


class ToolRegistry:
    """Tools by name. Registering a name twice is a configuration error."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, new: Tool) -> Tool:
        if not isinstance(new, Tool):
            raise ConfigError(f"{new!r} is not a pipeline.toolbox.Tool")
        if new.name in self._tools:
            raise ConfigError(f"two tools are named {new.name!r}; tool names must be unique")
        self._tools[new.name] = new
        return new

    def unregister(self, name: str) -> Tool | None:
        return self._tools.pop(name, None)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def tools(self) -> list[Tool]:
        """Every tool, by name."""
        return [self._tools[n] for n in self.names]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list[str]:
        return sorted(self._tools)

    def specs(self) -> list[dict[str, Any]]:
        """Every tool's function description, for an LLM's tool list."""
        return [self._tools[n].spec() for n in self.names]

    def only(self, names: Iterable[str], *, allow_unknown: bool = False) -> ToolRegistry:
        """A registry with just ``names``; an unknown name is a configuration error unless
        ``allow_unknown`` (the tools of MCP servers are only known once connected)."""
        wanted = list(dict.fromkeys(names))
        unknown = [n for n in wanted if n not in self._tools]
        if allow_unknown:
            wanted = [n for n in wanted if n in self._tools]
        elif unknown:
            raise ConfigError(
                f"enabled tools {unknown} are not registered; known tools: {self.names}"
            )
        return ToolRegistry(self._tools[n] for n in wanted)

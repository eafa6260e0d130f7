"""A tool's guarantee and the context its function may ask for."""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Mapping
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.sections import ToolsSettings
from pipeline.errors import ConfigError
from pipeline.tool_context import ToolContext
from pipeline.toolbox import (
    AT_MOST_ONCE,
    ENTRY_POINT_GROUP,
    IDEMPOTENT,
    KEYED,
    Tool,
    build_registry,
    load_entry_points,
    tool,
)
from pipeline.toolbox.registry import context_parameter

CONTEXT = ToolContext("call-1", "key-1", "refund", "web:acme:ada", "acme")
PLUGIN = """
from pipeline.toolbox import tool

@tool("charge", "Charge a card.", {"cents": {"type": "integer"}})
async def charge(args, context):
    return {"key": context.idempotency_key, "call": context.call_id}

@tool("lookup", "Look an order up.", {"id": {"type": "string"}}, guarantee="idempotent")
async def lookup(args):
    return {"id": args["id"]}
"""


def test_built_ins_are_idempotent_and_any_other_tool_is_keyed() -> None:
    registry = build_registry(ToolsSettings(), entry_points=False)
    assert {t.guarantee for t in registry.tools()} == {IDEMPOTENT}
    assert Tool("echo", "Echo.", lambda args: dict(args)).guarantee == KEYED

    @tool("refund", "Refund.", {"order": {"type": "string"}})
    async def refund(args: Mapping[str, Any]) -> None: ...

    @tool("cancel", "Cancel.", guarantee=AT_MOST_ONCE)
    async def cancel(args: Mapping[str, Any]) -> None: ...

    assert (refund.guarantee, cancel.guarantee) == (KEYED, AT_MOST_ONCE)


def test_an_unknown_guarantee_is_refused_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match="tool 'echo' is 'once'; use one of idempotent, keyed"):
        Tool("echo", "Echo.", lambda args: dict(args), guarantee="once")  # type: ignore[arg-type]


async def test_a_plugin_tool_receives_the_key_and_the_call_id_and_keeps_its_guarantee(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shop_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    charge, lookup = load_entry_points(
        [
            EntryPoint("charge", "shop_plugin:charge", ENTRY_POINT_GROUP),
            EntryPoint("lookup", "shop_plugin:lookup", ENTRY_POINT_GROUP),
        ]
    )
    assert (charge.source, charge.guarantee) == ("plugin:charge", KEYED)
    assert (lookup.source, lookup.guarantee) == ("plugin:lookup", IDEMPOTENT)
    assert await charge({"cents": 5}, CONTEXT) == {"key": "key-1", "call": "call-1"}
    assert await lookup({"id": "A-1"}, CONTEXT) == {"id": "A-1"}


async def test_a_function_asks_for_the_context_by_position_or_by_keyword() -> None:
    async def positional(args: Mapping[str, Any], context: ToolContext) -> str:
        return context.idempotency_key

    async def keyword(args: Mapping[str, Any], *, context: ToolContext) -> str:
        return context.call_id

    def plain(args: Mapping[str, Any], context: ToolContext) -> tuple[str, str]:
        return context.tool, threading.current_thread().name

    assert await Tool("a", "A.", positional)({}, CONTEXT) == "key-1"
    assert await Tool("b", "B.", keyword)({}, CONTEXT) == "call-1"
    name, thread = await Tool("c", "C.", plain)({}, CONTEXT)
    assert name == "refund" and thread != threading.main_thread().name


async def test_a_function_of_the_arguments_alone_works_as_before() -> None:
    async def one(args: Mapping[str, Any]) -> dict[str, Any]:
        return {"got": dict(args)}

    assert await Tool("one", "One.", one)({"x": 1}, CONTEXT) == {"got": {"x": 1}}
    assert await Tool("two", "Two.", lambda args: args["x"] + 1)({"x": 1}, CONTEXT) == 2
    assert await Tool("three", "Three.", one)({"x": 2}) == {"got": {"x": 2}}


async def test_without_a_context_the_tool_gets_a_standalone_one() -> None:
    async def key(args: Mapping[str, Any], context: ToolContext) -> str:
        return context.idempotency_key

    keyed = Tool("key", "Key.", key)
    first, second = await keyed({}), await keyed({})
    assert first != second and len(first) == 36


def test_the_signature_is_read_once_and_survives_a_copy() -> None:
    class Charger:
        def __call__(self, args: Mapping[str, Any], context: ToolContext) -> None: ...

    def three(args: Mapping[str, Any], context: ToolContext, extra: int = 0) -> None: ...

    assert context_parameter(Charger()) == "positional"
    assert context_parameter(functools.partial(three, extra=1)) == "positional"
    assert context_parameter(lambda args, *, context: None) == "keyword"
    assert context_parameter(lambda args, *, ctx=None: None) is None
    assert context_parameter(dict) is None  # no readable signature: the arguments alone
    copied = dataclasses.replace(Tool("c", "C.", Charger()), source="plugin:c")
    assert copied._context == "positional"

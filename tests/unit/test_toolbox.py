"""The tool registry, the built-ins, user tools from entry points and the tool runner."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Mapping
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.sections import ToolsSettings
from pipeline.errors import ConfigError
from pipeline.services.tools import ToolRunner
from pipeline.toolbox import (
    ENTRY_POINT_GROUP,
    Tool,
    ToolError,
    ToolRegistry,
    build_registry,
    builtin_tools,
    discover_tools,
    load_entry_points,
    tool,
)
from pipeline.toolbox.knowledge import KnowledgeBase

REPO = Path(__file__).resolve().parents[2]
PLUGIN = """
from pipeline.toolbox import Tool, tool

@tool("shout", "Upper-case a text.", {"text": {"type": "string"}})
async def shout(args):
    return {"text": args["text"].upper()}

def more():
    return [Tool("echo_back", "Echo.", lambda args: dict(args))]

not_a_tool = 42

def broken():
    raise RuntimeError("no licence key")
"""


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name, value, ENTRY_POINT_GROUP)


def test_builtins_are_registered_with_specs() -> None:
    registry = build_registry(ToolsSettings(), entry_points=False)
    assert registry.names == ["calculator", "current_time", "knowledge_lookup"]
    specs = {s["name"]: s for s in registry.specs()}
    assert specs["calculator"]["parameters"]["required"] == ["expression"]
    assert all(s["description"] for s in specs.values())


async def test_builtins_answer_the_agent_contract() -> None:
    knowledge = REPO / "deploy" / "knowledge" / "knowledge.yaml"
    registry = build_registry(ToolsSettings(knowledge_file=knowledge), entry_points=False)
    calculator = registry.get("calculator")
    current_time = registry.get("current_time")
    lookup = registry.get("knowledge_lookup")
    assert calculator is not None and current_time is not None and lookup is not None
    assert await calculator({"expression": "12*7"}) == {"value": 84}
    now = await current_time({})
    assert now["iso"].endswith("+00:00")
    paris = await current_time({"timezone": "Europe/Paris"})
    assert paris["timezone"] == "Europe/Paris"
    with pytest.raises(ToolError, match="unknown time zone"):
        await current_time({"timezone": "Mars/Olympus"})
    answer = await lookup({"query": "When are you open?"})
    assert "Monday to Friday" in answer["answer"]
    refund = await lookup({"query": "I want my money back"})
    assert refund["entry"] == "refunds"
    with pytest.raises(ToolError, match="nothing in the knowledge base matches"):
        await lookup({"query": "quantum chromodynamics"})
    with pytest.raises(ToolError, match="'expression' must be a non-empty string"):
        await calculator({})


async def test_knowledge_lookup_without_a_file_says_how_to_configure() -> None:
    registry = build_registry(ToolsSettings(), entry_points=False)
    lookup = registry.get("knowledge_lookup")
    assert lookup is not None
    with pytest.raises(ToolError, match="PIPELINE_TOOLS__KNOWLEDGE_FILE"):
        await lookup({"query": "hours"})


def test_knowledge_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "kb.yaml"
    bad.write_text("entries:\n  - keywords: [a]\n")
    with pytest.raises(ConfigError, match=r"entries\[0\] needs a non-empty 'answer'"):
        KnowledgeBase.load(bad)
    with pytest.raises(ConfigError, match="cannot read the knowledge file"):
        KnowledgeBase.load(tmp_path / "missing.yaml")
    as_json = tmp_path / "kb.json"
    as_json.write_text(json.dumps({"entries": [{"keywords": ["vat"], "answer": "20%"}]}))
    entry = KnowledgeBase.load(as_json).lookup("what VAT do you charge")
    assert entry is not None and entry.answer == "20%"


def test_registry_rejects_duplicates_bad_names_and_unknown_enabled() -> None:
    echo = Tool("echo", "Echo.", lambda args: dict(args))
    registry = ToolRegistry([echo])
    with pytest.raises(ConfigError, match="two tools are named 'echo'"):
        registry.register(echo)
    with pytest.raises(ConfigError, match="tool name 'Bad Name' is invalid"):
        Tool("Bad Name", "x", lambda args: None)
    with pytest.raises(ConfigError, match=r"enabled tools \['nope'\] are not registered"):
        registry.only(["nope"])
    narrowed = build_registry(ToolsSettings(enabled=["calculator"]), entry_points=False)
    assert narrowed.names == ["calculator"]


def test_entry_points_load_tools_and_factories(plugin_module: str) -> None:
    tools = load_entry_points(
        [point("shout", f"{plugin_module}:shout"), point("more", f"{plugin_module}:more")]
    )
    assert [t.name for t in tools] == ["shout", "echo_back"]
    registry = build_registry(ToolsSettings(), extra=tools, entry_points=False)
    assert "shout" in registry and "calculator" in registry


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ("not_a_tool", "must name a pipeline.toolbox.Tool or a factory"),
        ("broken", "the factory of the entry point 'bad'.*no licence key"),
        ("missing", "cannot load the entry point 'bad'"),
    ],
)
def test_broken_entry_points_are_config_errors(
    plugin_module: str, attribute: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_entry_points([point("bad", f"{plugin_module}:{attribute}")])


def test_installed_distribution_is_discovered(
    plugin_module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package installed with an entry point in ``pipeline.tools`` is found by name."""
    dist = tmp_path / "my_tools-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-tools\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [{ENTRY_POINT_GROUP}]
            shout = {plugin_module}:shout
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [t.name for t in discover_tools()] == ["shout"]
    builtins = ["calculator", "current_time", "knowledge_lookup"]
    # Installed is not enough: a plugin is loaded only when the allow-list names it.
    assert build_registry(ToolsSettings()).names == builtins
    for allowed in (["shout"], "all"):
        registry = build_registry(ToolsSettings(plugins=allowed))
        assert registry.names == [*builtins, "shout"]
        assert registry.get("shout").source == "plugin:shout"  # type: ignore[union-attr]
    assert build_registry(ToolsSettings(plugins="all"), entry_points=False).names == builtins
    with pytest.raises(
        ConfigError, match=r"tool plugins \['wether'\] are allowed but not installed"
    ):
        build_registry(ToolsSettings(plugins=["wether"]))


def test_tools_carry_a_valid_json_schema_and_their_source() -> None:
    assert {t.source for t in builtin_tools(ToolsSettings())} == {"builtin"}
    with pytest.raises(ConfigError, match='must be a JSON Schema with "type": "object"'):
        Tool("bad", "Bad.", lambda args: None, {"type": "string"})
    with pytest.raises(ConfigError, match="parameters of tool 'bad' are not a valid JSON Schema"):
        Tool("bad", "Bad.", lambda args: None, {"type": "object", "properties": 3})


def runner(*tools: Tool, concurrency: int = 4, timeout: float = 5.0) -> ToolRunner:
    return ToolRunner(
        ToolRegistry(tools), max_concurrency=concurrency, default_timeout=timeout, max_timeout=10
    )


async def test_runner_statuses() -> None:
    async def slow(args: Mapping[str, Any]) -> None:
        await asyncio.sleep(5)

    def crash(args: Mapping[str, Any]) -> None:
        raise KeyError("boom")

    @tool("picky", "Refuses.")
    async def picky(args: Mapping[str, Any]) -> None:
        raise ToolError("the argument 'x' is required")

    run = runner(Tool("slow", "Slow.", slow), Tool("crash", "Crash.", crash), picky)
    assert await run.run("slow", "{}", 50) == ("timeout", None, "slow did not finish within 0.05s")
    status, _, error = await run.run("crash", "{}", 1000)
    assert (status, error) == ("error", "crash failed: KeyError: 'boom'")
    assert await run.run("picky", "{}", 0) == ("error", None, "the argument 'x' is required")
    status, _, error = await run.run("nope", "{}", 0)
    assert status == "error" and error is not None and "unknown tool 'nope'" in error
    assert (await run.run("picky", "{not json", 0))[2].startswith("arguments are not valid JSON")
    assert await run.run("picky", "[1]", 0) == ("error", None, "arguments must be a JSON object")
    assert run.timeout_for(0) == 5.0
    assert run.timeout_for(999_000) == 10  # capped by max_timeout


async def test_runner_limits_concurrency_and_runs_plain_functions_in_threads() -> None:
    running = 0
    most = 0

    async def busy(args: Mapping[str, Any]) -> dict[str, int]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1
        return {"n": args["n"]}

    def blocking(args: Mapping[str, Any]) -> dict[str, str]:
        import threading
        import time

        time.sleep(0.01)
        return {"thread": threading.current_thread().name}

    run = runner(Tool("busy", "Busy.", busy), Tool("blocking", "Blocks.", blocking), concurrency=3)
    results = await asyncio.gather(*(run.run("busy", json.dumps({"n": i}), 0) for i in range(10)))
    assert [r[1] for r in results] == [{"n": i} for i in range(10)]
    assert most == 3
    status, result, _ = await run.run("blocking", "{}", 0)
    assert status == "ok" and result["thread"] != "MainThread"

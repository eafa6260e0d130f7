"""No module of the package imports from a layer above its own, nor another service's.

The layers, lowest first; a module may import from its own layer and those below it.
Parsed, not imported, so every import counts, including those inside functions. The
test harness (``pipeline.testing``) is for tests: no module of the package imports it.

Each service is a room of its own: a module under ``pipeline/services/<a>/`` imports
from ``pipeline/services/<a>/`` and lower layers, never from ``pipeline/services/<b>/``;
what two services share belongs lower (``pipeline.http``, ``pipeline.toolbox``, ...).

An import inside a function that exists to dodge a cycle hides a knot instead of
untying it, so none is allowed: an import of the package inside a function is refused
outside the short list of :data:`LAZY_IMPORTS` (each with its reason, none a cycle), and
the imports that run form no cycle. Type-only imports (``if TYPE_CHECKING:``) do not run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"

LAYERS: list[set[str]] = [
    {"errors", "retry", "file_cache"},  # no imports from the package at all
    {"config"},
    {"observability"},  # metrics, health, logs, traces and Kafka client logs: errors only
    {"events", "partitioner", "topology", "egress", "tool_context"},
    {"runtime", "state", "http", "journal"},  # how a service runs: on Kafka, over HTTP
    # The package's facade (pipeline/__init__.py), a service run in memory, the test harness.
    {"", "in_memory", "testing"},
    {"channels", "llm", "toolbox", "cleanup"},
    {"services", "timeline", "asyncapi", "replay", "deadletters", "evaluation"},
    {"dev", "cli", "__main__"},
]
LAYER_OF = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """The top-level part of the package a module belongs to ("" for the facade)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imported(path: Path, source: str | None = None) -> set[str]:
    """Every pipeline module ``path`` imports (``from pipeline import x``: pipeline.x)."""
    return imported_by(path, ast.walk(parse(path, source)))


def parse(path: Path, source: str | None = None) -> ast.Module:
    return ast.parse(path.read_text() if source is None else source, str(path))


def imported_by(path: Path, nodes: Iterable[ast.AST]) -> set[str]:
    """The pipeline modules the import statements among ``nodes`` of ``path`` import."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "pipeline")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            if origin.split(".")[0] != "pipeline":
                continue
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                as_path = PACKAGE.parent / submodule.replace(".", "/")
                is_module = as_path.is_dir() or as_path.with_suffix(".py").exists()
                found.add(submodule if is_module else origin)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {part_of(module_name(path)) for path in MODULES} - {"_data"}
    assert parts <= set(LAYER_OF), sorted(parts - set(LAYER_OF))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_higher_layer(path: Path) -> None:
    higher = higher_imports(path)
    assert not higher, f"{module_name(path)} imports from a higher layer: {higher}"


def higher_imports(path: Path, source: str | None = None) -> list[str]:
    own = LAYER_OF[part_of(module_name(path))]
    return sorted(t for t in imported(path, source) if LAYER_OF[part_of(t)] > own)


@pytest.mark.parametrize(
    "source",
    [
        "from pipeline.services.delivery.service import Delivery\n",
        "from pipeline.services import delivery\n",
        "import pipeline.services.agent\n",
        "def later() -> None:\n    from ...services.delivery import build\n",
    ],
)
def test_the_check_sees_a_channel_importing_a_service(source: str) -> None:
    path = PACKAGE / "channels" / "slack" / "outbound.py"
    assert higher_imports(path, source), source
    assert not higher_imports(path, "from pipeline.channels.outbound import Sent\n")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_of_the_package_imports_the_test_harness(path: Path) -> None:
    if module_name(path) == "pipeline.testing":
        return
    harness = sorted(t for t in imported(path) if t.startswith("pipeline.testing"))
    assert not harness, f"{module_name(path)} imports the test harness: {harness}"


# ---------------------------------------------------------------- one service, one room


def service_of(module: str) -> str | None:
    """The service a module belongs to (``pipeline.services.<name>...``), if any."""
    parts = module.split(".")
    return parts[2] if parts[:2] == ["pipeline", "services"] and len(parts) > 2 else None


def other_services(path: Path, source: str | None = None) -> list[str]:
    """The modules of other services that ``path`` (a service's module) imports."""
    own = service_of(module_name(path))
    if own is None:
        return []
    return sorted(t for t in imported(path, source) if service_of(t) not in (None, own))


SERVICE_MODULES = [path for path in MODULES if service_of(module_name(path)) is not None]


@pytest.mark.parametrize("path", SERVICE_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_service_imports_another(path: Path) -> None:
    others = other_services(path)
    assert not others, f"{module_name(path)} imports another service: {others}"


@pytest.mark.parametrize(
    "source",
    [
        "from pipeline.services.agent.operators import OperatorCommands\n",
        "from pipeline.services import gateway\n",
        "import pipeline.services.gateway.server\n",
        "from pipeline.services.tools import build\n",
        "def later() -> None:\n    from ..agent import operators\n",
    ],
)
def test_the_check_sees_a_service_importing_another(source: str) -> None:
    path = PACKAGE / "services" / "console" / "actions.py"
    assert other_services(path, source), source
    for allowed in (
        "from pipeline.services.console.view import ConsoleView\n",
        "from .view import ConsoleView\n",
        "from pipeline.services import load_service\n",
        "from pipeline.toolbox.approvals import EXPIRY\n",
    ):
        assert not other_services(path, allowed), allowed


# ---------------------------------------------------------------- no cycle, no dodge

_FOR_A_LEAN_PROCESS = (
    "each command imports what it runs when it runs: `pipeline run <service>` starts every "
    "service's process, which would otherwise load every other service too (twice the "
    "start-up time and memory)"
)
LAZY_IMPORTS: dict[str, str] = {
    "pipeline.cli": _FOR_A_LEAN_PROCESS,
    "pipeline.cli.asyncapi": _FOR_A_LEAN_PROCESS,
    "pipeline.cli.console": _FOR_A_LEAN_PROCESS,
    "pipeline.cli.evaluate": _FOR_A_LEAN_PROCESS,
    "pipeline.cli.replay": _FOR_A_LEAN_PROCESS,
    "pipeline.cli.schemas": _FOR_A_LEAN_PROCESS,
    "pipeline.events.wire": "the schema registry's client (about 16 MB) only in confluent mode",
}


def in_functions(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node inside a function's body (run when called, not when imported)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for statement in node.body:
                yield from ast.walk(statement)


def lazily_imported(path: Path, source: str | None = None) -> set[str]:
    """The pipeline modules ``path`` imports inside a function."""
    return imported_by(path, in_functions(parse(path, source)))


def type_only(tree: ast.Module) -> Iterator[ast.AST]:
    """Every node under a module-level ``if TYPE_CHECKING:`` (read by type checkers only)."""
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                yield from ast.walk(statement)


def run_imports(path: Path) -> set[str]:
    """The pipeline modules importing ``path`` or calling its functions imports: all but
    the type-only ones."""
    tree = parse(path)
    skipped = {id(node) for node in type_only(tree)}
    return imported_by(path, (n for n in ast.walk(tree) if id(n) not in skipped))


def a_cycle(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """A cycle of ``graph`` (module -> modules it imports), first module repeated at the
    end; [] when there is none."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str]:
        path.append(module)
        on_path.add(module)
        for target in graph.get(module, ()):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done:
                found = visit(target)
                if found:
                    return found
        path.pop()
        on_path.discard(module)
        done.add(module)
        return []

    for module in sorted(graph):
        if module not in done:
            found = visit(module)
            if found:
                return found
    return []


def as_module(target: str, modules: set[str]) -> str:
    """``pipeline.x.name`` is ``pipeline.x`` when ``name`` is not a module of its own."""
    while target not in modules and "." in target:
        target = target.rpartition(".")[0]
    return target


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_of_the_package_inside_a_function(path: Path) -> None:
    name = module_name(path)
    lazy = sorted(lazily_imported(path))
    assert name in LAZY_IMPORTS or not lazy, (
        f"{name} imports {lazy} inside a function: import at the top of the module, and "
        "if that makes a cycle, move what both sides need to a module of its own"
    )


@pytest.mark.parametrize("name", sorted(LAZY_IMPORTS))
def test_every_allowed_lazy_import_is_still_there(name: str) -> None:
    path = next(p for p in MODULES if module_name(p) == name)
    assert lazily_imported(path), f"{name} imports nothing lazily: drop it from LAZY_IMPORTS"


def test_the_imports_that_run_form_no_cycle() -> None:
    modules = {module_name(path) for path in MODULES}
    graph = {
        module_name(path): sorted({as_module(t, modules) for t in run_imports(path)})
        for path in MODULES
    }
    assert a_cycle(graph) == []


@pytest.mark.parametrize(
    "source",
    [
        "def run() -> None:\n    from pipeline.runtime.runner import Runner\n",
        "async def run() -> None:\n    import pipeline.runtime.runner\n",
        "class A:\n    def run(self) -> None:\n        from .runner import Runner\n",
        "def run() -> None:\n    def inner() -> None:\n        from . import runner\n",
        "def run() -> None:\n    if True:\n        from pipeline import runtime\n",
    ],
)
def test_the_check_sees_an_import_inside_a_function(source: str) -> None:
    path = PACKAGE / "runtime" / "service.py"
    assert lazily_imported(path, source), source
    for at_the_top in (
        "from pipeline.runtime.runner import Runner\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .runner import Runner\n",
        "def run() -> None:\n    import json\n",
    ):
        assert not lazily_imported(path, at_the_top), at_the_top


def test_the_cycle_check_finds_a_cycle() -> None:
    assert a_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a", "b", "c", "a"]
    assert a_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) == []
    assert a_cycle({"a": ["a"]}) == ["a", "a"]

"""No module of the package imports from a layer above its own.

The layers, lowest first; a module may import from its own layer and those below it.
Parsed, not imported, so every import counts, including those inside functions. The
test harness (``pipeline.testing``) is for tests: no module of the package imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"

LAYERS: list[set[str]] = [
    {"errors", "retry"},  # no imports from the package at all
    {"config"},
    {"observability"},  # metrics, health, logs, traces and Kafka client logs: errors only
    {"events", "partitioner", "topology", "egress"},
    {"runtime", "state", "http"},  # how a service runs: on Kafka, and over HTTP
    # The package's facade (pipeline/__init__.py), a service run in memory, the test harness.
    {"", "in_memory", "testing"},
    {"channels", "llm", "toolbox"},
    {"services", "timeline", "asyncapi", "replay", "deadletters"},
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
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    text = path.read_text() if source is None else source
    for node in ast.walk(ast.parse(text, str(path))):
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

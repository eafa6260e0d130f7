"""The public API is ``pipeline.__all__``; keep it and the package's namespace in step."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import re
from pathlib import Path

import pipeline
from pipeline import errors

PACKAGE = Path(pipeline.__file__).parent


def test_every_exported_name_exists() -> None:
    for name in pipeline.__all__:
        assert hasattr(pipeline, name), name


def test_every_public_member_is_exported() -> None:
    public = {
        name
        for name, value in vars(pipeline).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public
    assert public <= set(pipeline.__all__), sorted(public - set(pipeline.__all__))


def test_exports_are_sorted_and_unique() -> None:
    assert pipeline.__all__ == sorted(set(pipeline.__all__))


def test_every_error_is_exported() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if inspect.isclass(value) and issubclass(value, BaseException)
    ]
    assert len(classes) >= 5
    for cls in classes:
        assert issubclass(cls, pipeline.PipelineError), cls
        assert getattr(pipeline, cls.__name__) is cls


def error_classes() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException)
    }


def test_no_exception_class_is_defined_outside_errors_py() -> None:
    """Every module of the package, parsed rather than imported (so a module needing an
    extra is scanned too): a class whose base is an exception is defined in errors.py."""
    known = set(error_classes()) | {"Exception", "BaseException", "ValueError"}
    elsewhere = []
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50
    for path in modules:
        if path == PACKAGE / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases}
            if bases & known or any(b.endswith(("Error", "Exception")) for b in bases):
                elsewhere.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}")
    assert not elsewhere, f"exception classes belong in pipeline/errors.py: {elsewhere}"


def test_the_tree_in_the_errors_docstring_is_the_class_tree() -> None:
    assert errors.__doc__ is not None
    drawn: dict[str, str] = {}
    parents: list[str] = []
    for line in errors.__doc__.splitlines():
        found = re.match(
            r"^([│ ]*)(?:[├└]── )?([A-Z]\w+(?:Error|Event|Rejected|Refused|Redriven))\b", line
        )
        if found is None:
            continue
        depth = len(found.group(1)) // 4 + (1 if "──" in line else 0)
        del parents[depth:]
        drawn[found.group(2)] = parents[-1] if parents else "Exception"
        parents.append(found.group(2))
    actual = {
        name: next(b.__name__ for b in cls.__bases__ if issubclass(b, BaseException))
        for name, cls in error_classes().items()
    }
    assert drawn == actual


def test_the_facade_is_exported() -> None:
    for name in ("Service", "Context", "Event", "Settings"):
        assert name in pipeline.__all__


def test_version_matches_the_distribution() -> None:
    assert pipeline.__version__ == importlib.metadata.version("kafka-agent-pipeline")

"""The public API is ``pipeline.__all__``; keep it and the package's namespace in step."""

from __future__ import annotations

import importlib.metadata
import inspect

import pipeline
from pipeline import errors


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


def test_the_facade_is_exported() -> None:
    for name in ("Service", "Context", "Event", "Settings"):
        assert name in pipeline.__all__


def test_version_matches_the_distribution() -> None:
    assert pipeline.__version__ == importlib.metadata.version("kafka-agent-pipeline")

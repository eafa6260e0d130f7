"""The README's "Writing a handler" example and its unit test, run from the README itself
so the two cannot drift apart."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator

import pytest

from tests.paths import README


def section_code(title: str) -> list[str]:
    """The ```python blocks of one ``## title`` section of the README."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else None]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def my_service() -> Iterator[types.ModuleType]:
    """The README's handler module, importable as ``my_service`` as its test imports it."""
    handler_code, _ = section_code("Writing a handler")
    assert handler_code.startswith("# my_service.py\n")
    module = types.ModuleType("my_service")
    exec(compile(handler_code, "README.md:my_service.py", "exec"), module.__dict__)
    sys.modules["my_service"] = module
    yield module
    del sys.modules["my_service"]


async def test_the_readme_handler_test_passes(my_service: types.ModuleType) -> None:
    _, test_code = section_code("Writing a handler")
    assert test_code.startswith("# test_my_service.py\n")
    namespace: dict[str, object] = {"__name__": "test_my_service"}
    exec(compile(test_code, "README.md:test_my_service.py", "exec"), namespace)
    tests = {name: fn for name, fn in namespace.items() if name.startswith("test_")}
    assert list(tests) == ["test_echo_answers_in_the_same_conversation"]
    for test in tests.values():
        assert callable(test)
        await test()


async def test_the_readme_test_fails_when_the_handler_is_wrong(
    my_service: types.ModuleType,
) -> None:
    """The README's test can fail: an echo that changes the text does not pass it."""
    [handler] = my_service.service.handlers

    async def shouting(event, ctx):  # type: ignore[no-untyped-def]
        ctx.emit("response_ready", {"reply_to": event["reply_to"], "text": "HI"})

    object.__setattr__(handler, "fn", shouting)  # HandlerSpec is frozen
    _, test_code = section_code("Writing a handler")
    namespace: dict[str, object] = {"__name__": "test_my_service"}
    exec(compile(test_code, "README.md:test_my_service.py", "exec"), namespace)
    test = namespace["test_echo_answers_in_the_same_conversation"]
    assert callable(test)
    with pytest.raises(AssertionError):
        await test()

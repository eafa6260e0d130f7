"""Which event loop a service process runs on: uvloop where it is installed, else asyncio's.

Every handler, acknowledgement, timer and HTTP request of a service goes through the
loop, so its own cost per callback is paid many times per event; uvloop's (libuv, in C)
is several times cheaper than the selector loop's. Everything the runtime asks of the
loop (``run_in_executor`` on the Kafka threads, ``call_soon_threadsafe``, signal
handlers) works the same on both.

The ``event_loop`` setting picks it: ``auto`` (uvloop when importable), ``uvloop``
(refused at start when not installed) or ``asyncio``.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from pipeline.errors import ConfigError

__all__ = ["EventLoopChoice", "loop_factory", "resolve", "run"]

T = TypeVar("T")
EventLoopChoice = Literal["auto", "asyncio", "uvloop"]


def resolve(choice: EventLoopChoice) -> Literal["asyncio", "uvloop"]:
    """The loop ``choice`` names here: ``auto`` is uvloop when it is installed.

    Raises ConfigError for ``uvloop`` when it is not installed.
    """
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "asyncio" or (choice == "auto" and not installed):
        return "asyncio"
    if not installed:
        raise ConfigError(
            "PIPELINE_EVENT_LOOP=uvloop but uvloop is not installed: "
            "pip install uvloop, or set PIPELINE_EVENT_LOOP=asyncio"
        )
    return "uvloop"


def loop_factory(choice: EventLoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory of new loops for ``choice``; None for asyncio's default loop."""
    if resolve(choice) == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: EventLoopChoice) -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)

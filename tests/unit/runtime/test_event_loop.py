"""The event loop a service runs on: uvloop where installed, asyncio's when asked."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest
import uvloop

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.http.server import GracefulServer
from pipeline.runtime import event_loop


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_auto_is_the_default_and_runs_on_uvloop_when_it_is_installed() -> None:
    assert Settings().event_loop == "auto"
    assert event_loop.resolve("auto") == "uvloop"
    assert issubclass(event_loop.run(_loop_type(), "auto"), uvloop.Loop)


def test_asyncio_runs_on_the_standard_loop() -> None:
    ran_on = event_loop.run(_loop_type(), "asyncio")
    assert not issubclass(ran_on, uvloop.Loop)
    assert issubclass(ran_on, asyncio.BaseEventLoop)


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    assert event_loop.resolve("auto") == "asyncio"
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        event_loop.resolve("uvloop")


def test_the_http_servers_run_on_the_loop_the_setting_names() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not served")

    def server(loop: event_loop.EventLoopChoice) -> GracefulServer:
        return GracefulServer.for_app(
            app,
            host="127.0.0.1",
            port=0,
            drain_timeout_seconds=1,
            on_exit=lambda: None,
            loop=loop,
        )

    assert server("auto").config.loop == "uvloop"
    assert server("asyncio").config.loop == "asyncio"

"""`pipeline up` names a port that is taken and the option that moves it."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pipeline.dev.kafka import free_port
from pipeline.dev.stack.local import LocalStack
from pipeline.errors import StackError


@pytest.fixture
def taken() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_taken_gateway_or_console_port_names_its_option(taken: int) -> None:
    env = {"PIPELINE_GATEWAY__PORT": str(taken)}
    stack = LocalStack(env, services=["gateway"], metrics_base_port=free_port())
    with pytest.raises(StackError, match=f"port {taken} \\(the gateway's port\\) is in use"):
        stack.check_ports()
    env = {"PIPELINE_CONSOLE__PORT": str(taken)}
    stack = LocalStack(env, services=["console"], metrics_base_port=free_port())
    with pytest.raises(StackError, match="pick another port with --console-port"):
        stack.check_ports()


@pytest.fixture
def taken_after_a_free_one() -> Iterator[int]:
    """A taken port whose port before it is free (for the first service's metrics)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            port = int(sock.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as before:
                try:
                    before.bind(("127.0.0.1", port - 1))
                except OSError:
                    continue
            yield port
            return
    raise RuntimeError("no taken port with a free one before it")


def test_a_taken_metrics_port_names_the_base_port_option(taken_after_a_free_one: int) -> None:
    taken = taken_after_a_free_one
    stack = LocalStack(services=["agent", "tools"], metrics_base_port=taken - 1)
    with pytest.raises(StackError) as raised:
        stack.check_ports()
    assert f"port {taken} (the metrics port of tools) is in use" in str(raised.value)
    assert "--metrics-base-port" in str(raised.value)


def test_an_exit_on_a_taken_port_gets_the_option_as_advice() -> None:
    stack = LocalStack({"PIPELINE_GATEWAY__PORT": "8123"}, metrics_base_port=9101)
    uvicorn = (
        "ERROR uvicorn.error: [Errno 98] error while attempting to bind on address "
        "('0.0.0.0', 8123): address already in use"
    )
    assert stack.advise("gateway", uvicorn) == (
        "the gateway's port, 8123, is taken: pick another with --gateway-port"
    )
    assert stack.advise("agent", "OSError: [Errno 98] Address already in use") == (
        "a port of agent is taken: pick others with --metrics-base-port"
    )
    assert stack.advise("gateway", "OSError: [Errno 98] Address already in use") == (
        "a port of gateway is taken: pick others with --gateway-port or --metrics-base-port"
    )
    assert stack.advise("agent", "ERROR the model answered 500") is None

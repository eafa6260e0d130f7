"""HTTP tools against a real local server: the JSON body, the Idempotency-Key header, the
egress policy, failures as tool errors, and HTTP tools from the settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.config.sections import ToolsSettings
from pipeline.dev.kafka import free_port
from pipeline.egress import EgressPolicy
from pipeline.errors import ConfigError, ToolError
from pipeline.tool_context import ToolContext
from pipeline.toolbox import AT_MOST_ONCE, KEYED, build_registry, http_tool
from tests.http_receiver import Answer, Receiver

LOCAL = EgressPolicy.of(True, ["127.0.0.0/8"])  # http to loopback, as in development
PARAMETERS = {"type": "object", "properties": {"order_id": {"type": "string"}}}
CONTEXT = ToolContext("call-3", "0b7e2c4a-key", "refund", "web:acme:ada", "acme")


def port(server: Receiver) -> int:
    return int(server.server.server_address[1])


@pytest.fixture
def receiver() -> Iterator[Any]:
    started: list[Receiver] = []

    def start(*answers: Answer) -> Receiver:
        started.append(Receiver(list(answers) or [(200, {}, b'{"refund": "R-1"}')]))
        return started[-1]

    yield start
    for one in started:
        one.close()


async def test_the_endpoint_receives_the_arguments_and_the_idempotency_key(receiver: Any) -> None:
    server = receiver()
    refund = http_tool(
        "refund",
        "Refund an order.",
        f"{server.url}/refunds",
        PARAMETERS,
        headers={"Authorization": "Bearer s3cret"},
        policy=LOCAL,
    )
    assert refund.guarantee == KEYED
    assert await refund({"order_id": "A-1001"}, CONTEXT) == {"refund": "R-1"}
    await refund({"order_id": "A-1001"}, CONTEXT)  # the same call again: the same key
    first, again = server.seen
    assert (first.method, first.path, first.json()) == ("POST", "/refunds", {"order_id": "A-1001"})
    assert first.headers["idempotency-key"] == again.headers["idempotency-key"] == "0b7e2c4a-key"
    assert first.headers["authorization"] == "Bearer s3cret"
    assert first.headers["content-type"] == "application/json"


async def test_the_egress_policy_guards_the_endpoint(receiver: Any) -> None:
    server = receiver()
    with pytest.raises(ConfigError, match=r"URL of HTTP tool 'refund' is refused: .* https"):
        http_tool("refund", "Refund.", server.url, PARAMETERS)  # http, by default refused
    public_only = EgressPolicy.of(True, [])  # http allowed, so the address check is reached
    refund = http_tool(
        "refund", "Refund.", f"http://localhost:{port(server)}/", PARAMETERS, policy=public_only
    )
    with pytest.raises(ToolError, match="resolves to a loopback address; not connecting"):
        await refund({"order_id": "A-1"}, CONTEXT)
    assert server.seen == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((500, {}, b'{"error": "ledger down"}'), 'answered 500: {"error": "ledger down"}'),
        ((404, {}, b""), "answered 404$"),
        ((302, {"Location": "https://elsewhere.example/"}, b""), "answered 302"),
        (
            (200, {"Content-Type": "text/html"}, b"<html>"),
            r"answered with a body that is not JSON \(text/html\)",
        ),
    ],
)
async def test_an_unusable_answer_is_a_tool_error(
    receiver: Any, answer: Answer, expected: str
) -> None:
    server = receiver(answer)
    refund = http_tool("refund", "Refund.", server.url, PARAMETERS, policy=LOCAL)
    with pytest.raises(ToolError, match=f"^refund: http://127.0.0.1:{port(server)} {expected}"):
        await refund({"order_id": "A-1"}, CONTEXT)


async def test_an_empty_answer_is_null_and_a_closed_port_a_tool_error(receiver: Any) -> None:
    server = receiver((204, {}, b""))
    refund = http_tool("refund", "Refund.", server.url, PARAMETERS, policy=LOCAL)
    assert await refund({"order_id": "A-1"}, CONTEXT) is None
    closed = http_tool("refund", "R.", f"http://127.0.0.1:{free_port()}", PARAMETERS, policy=LOCAL)
    with pytest.raises(ToolError, match=r"the request to http://127\.0\.0\.1:\d+ failed"):
        await closed({"order_id": "A-1"}, CONTEXT)


async def test_http_tools_from_the_settings(receiver: Any) -> None:
    server = receiver((200, {}, b'{"ok": true}'))
    settings = ToolsSettings.model_validate(
        {
            "http_tools": {
                "cancel_order": {
                    "url": f"{server.url}/orders/cancel",
                    "description": "Cancel an order.",
                    "parameters": PARAMETERS,
                    "method": "PUT",
                    "guarantee": "at_most_once",
                    "headers": {"X-Api-Key": "k-123"},
                }
            },
            "http_allow_http": True,
            "http_allowed_networks": ["127.0.0.0/8"],
        }
    )
    assert "k-123" not in repr(settings)
    cancel = build_registry(settings, entry_points=False).get("cancel_order")
    assert cancel is not None
    assert (cancel.source, cancel.guarantee, cancel.parameters) == (
        "http",
        AT_MOST_ONCE,
        PARAMETERS,
    )
    assert await cancel({"order_id": "A-7"}, CONTEXT) == {"ok": True}
    (seen,) = server.seen
    assert (seen.method, seen.path, json.loads(seen.body)) == (
        "PUT",
        "/orders/cancel",
        {"order_id": "A-7"},
    )
    assert (seen.headers["idempotency-key"], seen.headers["x-api-key"]) == ("0b7e2c4a-key", "k-123")
    # Without the development settings the same tool is refused at start.
    with pytest.raises(ConfigError, match="URL of HTTP tool 'cancel_order' is refused"):
        build_registry(settings.model_copy(update={"http_allow_http": False}), entry_points=False)

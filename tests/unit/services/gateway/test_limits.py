"""Hostile bodies are refused before use: nesting, numbers, text validity, timestamps,
per-field limits. Each refusal is a 4xx with a reason, and produces nothing."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from pipeline.channels.inbound import MAX_JSON_DEPTH, Inbound, Parsed, json_object, parse_timestamp
from pipeline.channels.slack import inbound as slack
from pipeline.channels.webhook.inbound import signature_headers
from pipeline.config.sections import GatewaySettings
from pipeline.errors import InboundRejected
from pipeline.runtime.publisher import Publisher
from pipeline.services.gateway import create_app
from pipeline.services.gateway.limits import check_limits
from tests.unit.services.gateway.test_app import (
    SERDE,
    WA_SECRET,
    RecordingProducer,
    gateway_config,
    hmac_hex,
    slack_event,
    slack_headers,
)


def refusal(status: int, fn: Any, *args: Any) -> str:
    with pytest.raises(InboundRejected) as caught:
        fn(*args)
    assert caught.value.status == status, caught.value.reason
    return caught.value.reason


def nested(depth: int) -> bytes:
    return b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_nesting_up_to_the_limit_is_read_and_deeper_is_400() -> None:
    value: Any = json_object(nested(MAX_JSON_DEPTH))["a"]
    for _ in range(MAX_JSON_DEPTH - 2):
        (value,) = value
    assert value == []
    assert "nested deeper than 32" in refusal(400, json_object, nested(MAX_JSON_DEPTH + 1))
    # Far past Python's recursion limit: refused as well, not a RecursionError.
    assert "nested deeper" in refusal(400, json_object, nested(200_000))
    bomb = b'{"a": ' + b'{"b": ' * 100_000 + b"1" + b"}" * 100_000 + b"}"
    assert "nested deeper" in refusal(400, json_object, bomb)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert json_object(json.dumps({"text": "[" * 1000}).encode())["text"] == "[" * 1000


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n": NaN}',
        b'{"n": Infinity}',
        b'{"n": -Infinity}',
        b'{"n": 1e999}',
        b'{"n": ' + b"9" * 5000 + b"}",
        b'{"text": "\xff\xfe"}',
        b'{"text": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8: not valid UTF-8
    ],
)
def test_non_standard_numbers_and_invalid_utf8_are_400(raw: bytes) -> None:
    assert refusal(400, json_object, raw)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"text": "\\ud800"}', "body.text"),
        (b'{"text": "ok \\udfff"}', "body.text"),
        (b'{"a": [{"b": "\\uDBFF x"}]}', "body.a.0.b"),
        (b'{"\\ud800": 1}', "body (a key)"),
    ],
)
def test_lone_surrogates_are_400_naming_where(raw: bytes, where: str) -> None:
    assert refusal(400, json_object, raw).startswith(f"{where}: contains a lone UTF-16 surrogate")


def test_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    assert json_object(b'{"text": "\\ud83d\\ude00"}')["text"] == "\U0001f600"
    assert json_object(b'{"text": "\\\\ud800"}')["text"] == "\\ud800"
    assert json_object(b'{"n": 1.5e300, "m": 123456789012345678901234567890}')["n"] == 1.5e300


@pytest.mark.parametrize("value", ["1700000000", " 1700000000 ", "0", "999999999999"])
def test_timestamps_of_up_to_twelve_digits_are_read(value: str) -> None:
    assert parse_timestamp(value, "X-Time") == int(value)


@pytest.mark.parametrize(
    "value", [None, "", "1" * 400, "1" * 13, "-5", "+5", "1e9", "17.5", "\u0661\u0662", "0x10"]
)
def test_other_timestamps_are_401_naming_the_header(value: str | None) -> None:
    assert "X-Time" in refusal(401, parse_timestamp, value, "X-Time")


def test_slack_400_digit_timestamp_is_401_before_the_signature() -> None:
    reason = refusal(401, slack.verify, "secret", "9" * 400, "v0=00", b"{}", time.time())
    assert "X-Slack-Request-Timestamp" in reason


def inbound(**data: Any) -> Inbound:
    fields = {"sender_id": "u", "text": "hi", "reply_to": {"address": "a"}, **data}
    return Inbound("message_received", "c1", "t", fields, "web")


LIMITS = GatewaySettings(
    max_text_chars=10, max_messages_per_request=2, max_attachments=1, max_id_chars=64
)


def test_limits_allow_what_is_within_them() -> None:
    check_limits(Parsed((inbound(text="x" * 10, attachments=[{}]),) * 2), LIMITS)


@pytest.mark.parametrize(
    ("parsed", "reason"),
    [
        (Parsed((inbound(),) * 3), "3 messages in one request, over the limit of 2"),
        (Parsed((inbound(text="x" * 11),)), "text is 11 characters long, over the limit of 10"),
        (Parsed((inbound(attachments=[{}, {}]),)), "2 attachments on one message"),
        (Parsed((inbound(sender_id="s" * 65),)), "sender_id is 65 characters long"),
        (Parsed((inbound(external_id="e" * 65),)), "external_id is 65"),
        (Parsed((inbound(reply_to={"address": "a" * 65}),)), "reply_to.address is 65"),
        (
            Parsed((Inbound("message_received", "c" * 65, "t", {}, "web"),)),
            "conversation_id is 65",
        ),
    ],
)
def test_limits_refuse_with_413_naming_the_field(parsed: Parsed, reason: str) -> None:
    assert reason in refusal(413, check_limits, parsed, LIMITS)


@pytest.fixture
async def limited() -> Any:
    producer = RecordingProducer()
    settings = gateway_config(
        max_body_bytes=64 * 1024, max_text_chars=100, max_messages_per_request=3, max_id_chars=64
    )
    publisher = Publisher(settings, producer, SERDE, "gateway")  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=create_app(settings, publisher=publisher))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield http, producer


def whatsapp(count: int) -> bytes:
    messages = [
        {"from": "4911", "id": f"wamid.{uuid.uuid4()}", "type": "text", "text": {"body": "m"}}
        for _ in range(count)
    ]
    value = {"metadata": {"phone_number_id": "PN1"}, "messages": messages}
    payload = {"object": "whatsapp_business_account", "entry": [{"changes": [{"value": value}]}]}
    return json.dumps(payload).encode()


async def test_gateway_refuses_over_limit_requests_whole_and_produces_nothing(
    limited: tuple[httpx.AsyncClient, RecordingProducer],
) -> None:
    http, producer = limited
    web = {"user_id": "u1", "text": "x" * 101, "callback_url": "http://cb/r"}
    long_text = await http.post(
        "/v1/web/messages", json=web, headers={"Authorization": "Bearer tok-acme"}
    )
    assert long_text.status_code == 413
    assert "text is 101 characters long" in long_text.json()["error"]

    raw = whatsapp(4)
    signed = {"X-Hub-Signature-256": "sha256=" + hmac_hex(WA_SECRET, raw)}
    batch = await http.post("/v1/whatsapp/webhook", content=raw, headers=signed)
    assert batch.status_code == 413
    assert "4 messages in one request, over the limit of 3" in batch.json()["error"]

    raw = slack_event(channel="C" * 100)
    oversized = await http.post("/v1/slack/events", content=raw, headers=slack_headers(raw))
    assert oversized.status_code == 413
    assert "conversation_id" in oversized.json()["error"]

    deep = b'{"event": "x", "conversation_id": "c", "extra": ' + b"[" * 40 + b"]" * 40 + b"}"
    hook = signature_headers("zd-secret", deep, time.time())
    nested_hook = await http.post("/v1/webhooks/zendesk", content=deep, headers=hook)
    assert nested_hook.status_code == 400
    assert "nested deeper" in nested_hook.json()["error"]
    assert producer.records == []

    raw = whatsapp(3)
    signed = {"X-Hub-Signature-256": "sha256=" + hmac_hex(WA_SECRET, raw)}
    within = await http.post("/v1/whatsapp/webhook", content=raw, headers=signed)
    assert within.status_code == 200
    assert len(producer.records) == 3


async def test_slack_huge_timestamp_is_401_over_http(
    limited: tuple[httpx.AsyncClient, RecordingProducer],
) -> None:
    http, producer = limited
    raw = slack_event()
    headers = {**slack_headers(raw), "X-Slack-Request-Timestamp": "9" * 400}
    response = await http.post("/v1/slack/events", content=raw, headers=headers)
    assert response.status_code == 401
    assert "X-Slack-Request-Timestamp" in response.json()["error"]
    assert producer.records == []

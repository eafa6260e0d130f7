"""Hostile requests for the gateway fuzz: valid bodies of every channel, then broken.

Each request says whether it is to be signed; :func:`credentials` then adds the right
bearer token or signature over the exact bytes sent, so a broken body reaches the
parsers instead of stopping at authentication. Everything is drawn from a seeded
``random.Random``: the same seed gives the same corpus.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.channels.web import chat_token
from pipeline.channels.web.chat_token import ChatScope
from pipeline.channels.webhook.inbound import signature_headers

WEB_TOKEN = "fuzz-web"
MAIL_TOKEN = "fuzz-mail"
SLACK_SECRET = "fuzz-slack"
WA_SECRET = "fuzz-meta"
WA_VERIFY = "fuzz-verify"
HOOK_SOURCE = "crm"
HOOK_SECRET = "fuzz-hook"
CHAT_SECRET = "fuzz-chat-token-secret"

# Limits the fuzzed gateway runs with, small enough that bodies can cross each of them.
LIMITS: dict[str, Any] = {
    "max_body_bytes": 128 * 1024,
    "max_text_chars": 2000,
    "max_messages_per_request": 20,
    "max_attachments": 5,
    "max_id_chars": 256,
}

ROUTES = (
    "/v1/web/messages",
    "/v1/web/chat/messages",
    "/v1/slack/events",
    "/v1/whatsapp/webhook",
    "/v1/email/inbound",
    f"/v1/webhooks/{HOOK_SOURCE}",
    f"/webhooks/{HOOK_SOURCE}",
)


@dataclass
class Request:
    method: str
    path: str
    body: bytes = b""
    sign: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] | None = None
    slack_timestamp: str | None = None
    """Sent as X-Slack-Request-Timestamp (and signed over) instead of the current time."""
    kind: str = "other"
    """How the body was made or broken (a key of :data:`EXPECTED_REFUSALS` or not)."""


# What a refusal of each kind of broken body says: the fuzz checks that every kind was
# refused for its own reason at least once, not only by authentication.
EXPECTED_REFUSALS = {
    "nested": "nested deeper than",
    "number": "not valid JSON",
    "surrogate": "lone UTF-16 surrogate",
    "oversized": "over the limit of",
    "utf-8": "not valid JSON",
    "many messages": "messages in one request, over the limit",
    "slack timestamp": "X-Slack-Request-Timestamp is not a Unix time",
    "wrong type": "invalid body",
    "truncated": "not valid JSON",
    "not an object": "body must be a JSON object",
    "unsigned": "missing",
}


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def credentials(request: Request) -> dict[str, str]:
    """Headers that make ``request`` pass its route's authentication (computed late:
    Slack's timestamp must be fresh)."""
    path, raw = request.path, request.body
    if path == "/v1/web/messages":
        return {"Authorization": f"Bearer {WEB_TOKEN}"}
    if path == "/v1/web/chat/messages":
        scope = ChatScope("fuzz", "u-fuzz", "web:fuzz:u-fuzz", int(time.time()) + 3600)
        return {"Authorization": f"Bearer {chat_token.issue(CHAT_SECRET, scope)}"}
    if path == "/v1/email/inbound":
        return {"Authorization": f"Bearer {MAIL_TOKEN}"}
    if path == "/v1/slack/events":
        ts = request.slack_timestamp or str(int(time.time()))
        signature = "v0=" + hmac_hex(SLACK_SECRET, f"v0:{ts}:".encode() + raw)
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}
    if path == "/v1/whatsapp/webhook":
        return {"X-Hub-Signature-256": "sha256=" + hmac_hex(WA_SECRET, raw)}
    if path.startswith(("/v1/webhooks/", "/webhooks/")):
        return signature_headers(HOOK_SECRET, raw, time.time())
    return {}


# --- valid bodies ----------------------------------------------------------------------


def _uid(rng: random.Random) -> str:
    return f"{rng.getrandbits(48):012x}"


def _text(rng: random.Random) -> str:
    return rng.choice(
        [
            "what is 12*7?",
            "hello",
            "look up refund policy",
            "emoji \U0001f600 and \u202eright-to-left\u202c and zero\u200bwidth",
            "nul \u0000 inside",
            "ünïcödé " * rng.randint(1, 20),
            "x" * rng.randint(1, LIMITS["max_text_chars"]),
        ]
    )


def web(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": f"u-{_uid(rng)}",
        "text": _text(rng),
        "callback_url": "http://127.0.0.1:9/cb",
        "message_id": _uid(rng),
    }
    if rng.random() < 0.5:
        body["conversation_id"] = f"conv-{_uid(rng)}"
    return body


def slack(rng: random.Random) -> dict[str, Any]:
    event = {
        "type": "message",
        "channel": f"C{_uid(rng)}",
        "user": f"U{_uid(rng)}",
        "text": _text(rng),
        "ts": f"{rng.randint(1_600_000_000, 1_800_000_000)}.{rng.randint(0, 999999):06d}",
    }
    if rng.random() < 0.3:
        event["channel_type"] = "im"
    return {"type": "event_callback", "team_id": "T1", "event_id": f"Ev{_uid(rng)}", "event": event}


def whatsapp(rng: random.Random, count: int | None = None) -> dict[str, Any]:
    count = rng.randint(1, 4) if count is None else count
    messages = [
        {
            "from": str(rng.randint(10**9, 10**12)),
            "id": f"wamid.{_uid(rng)}",
            "timestamp": str(rng.randint(1_600_000_000, 1_800_000_000)),
            "type": "text",
            "text": {"body": _text(rng)},
        }
        for _ in range(count)
    ]
    value = {
        "metadata": {"phone_number_id": "PN1", "display_phone_number": "15550000000"},
        "contacts": [{"wa_id": m["from"], "profile": {"name": "Ada"}} for m in messages],
        "messages": messages,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}],
    }


def email(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": "Ada <ada@example.com>",
        "to": ["help@example.com"],
        "subject": "question",
        "text": _text(rng),
        "message_id": f"<{_uid(rng)}@example.com>",
    }
    if rng.random() < 0.5:  # the relay's verdicts, in either of the forms relays report
        body["verdicts"] = {"dmarc": "pass"}
    else:
        body["authentication_results"] = (
            "mx.example.com; spf=pass smtp.mailfrom=ada@example.com; dmarc=pass "
            "header.from=example.com"
        )
    if rng.random() < 0.3:
        body["references"] = [f"<{_uid(rng)}@example.com>"]
    return body


def webhook(rng: random.Random) -> dict[str, Any]:
    return {
        "event": "ticket.resolved",
        "conversation_id": f"conv-{_uid(rng)}",
        "id": f"d-{_uid(rng)}",
        "ticket": {"id": rng.randint(1, 10**6), "tags": ["a", "b"]},
    }


def chat(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {"text": _text(rng)}
    if rng.random() < 0.5:
        body["message_id"] = _uid(rng)
    return body


VALID: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "/v1/web/messages": web,
    "/v1/web/chat/messages": chat,
    "/v1/slack/events": slack,
    "/v1/whatsapp/webhook": whatsapp,
    "/v1/email/inbound": email,
    f"/v1/webhooks/{HOOK_SOURCE}": webhook,
    f"/webhooks/{HOOK_SOURCE}": webhook,
}


# --- ways to break them ------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in a JSON value (dict keys and list indexes)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += _paths(child, (*prefix, i))
    return found


def _replace(value: Any, where: tuple[Any, ...], new: Any) -> Any:
    if not where:
        return new
    head, rest = where[0], where[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _anywhere(rng: random.Random, body: dict[str, Any], new: Any) -> Any:
    return _replace(body, rng.choice(_paths(body)[1:]), new)


class Raw(str):
    """JSON text spliced into a body as is (for what json.dumps cannot write)."""


def _dumps(value: Any) -> bytes:
    """JSON with :class:`Raw` pieces spliced in verbatim."""
    pieces: dict[str, str] = {}

    def swap(node: Any) -> Any:
        if isinstance(node, Raw):
            marker = f"@@raw{len(pieces)}@@"
            pieces[marker] = str(node)
            return marker
        if isinstance(node, dict):
            return {k: swap(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        return node

    text = json.dumps(swap(value))
    for marker, piece in pieces.items():
        text = text.replace(json.dumps(marker), piece)
    return text.encode()


def _nested(rng: random.Random) -> Raw:
    depth = rng.choice([30, 31, 32, 33, 40, 200, 999, 1001, 5000, 30_000])
    opener, closer = rng.choice([("[", "]"), ('{"k": ', "}")])
    inner = rng.choice(["1", '"x"', "[]", "{}"])
    return Raw(opener * depth + inner + closer * depth)


def _huge_number(rng: random.Random) -> Raw:
    return Raw(
        rng.choice(
            [
                "9" * rng.choice([19, 20, 400, 4300, 4301, 10_000]),
                "-" + "9" * 400,
                "1e308",
                "1e309",
                "-1e999",
                "1e-999",
                "0." + "0" * 5000 + "1",
                "NaN",
                "Infinity",
                "-Infinity",
                "1" + "0" * 400 + ".5",
            ]
        )
    )


def _lone_surrogate(rng: random.Random) -> Raw:
    escape = rng.choice(["\\ud800", "\\udfff", "\\uDBFF", "\\udc00x", "\\ud83d", "a\\ude00"])
    return Raw(f'"{escape}"')


def _oversized(rng: random.Random) -> str:
    size = rng.choice(
        [
            LIMITS["max_id_chars"] + 1,
            LIMITS["max_text_chars"] + 1,
            LIMITS["max_text_chars"] * 10,
            LIMITS["max_body_bytes"],
        ]
    )
    return rng.choice(["x", "é", "\U0001f600", "1"]) * size


def _wrong_type(rng: random.Random) -> Any:
    return rng.choice([None, True, 0, -1, 1.5, "", [], {}, [1, "a"], {"a": {"b": []}}, "x" * 5])


def _invalid_utf8(rng: random.Random, raw: bytes) -> bytes:
    bad = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"])
    quote = [i for i, byte in enumerate(raw) if byte == ord('"')]
    at = rng.choice(quote) + 1 if quote else rng.randrange(len(raw) + 1)
    return raw[:at] + bad + raw[at:]


def _byte_noise(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        action = rng.randrange(3)
        at = rng.randrange(len(data) + 1)
        if action == 0 and at < len(data):
            data[at] = rng.randrange(256)
        elif action == 1:
            data[at:at] = bytes([rng.randrange(256)])
        elif at < len(data):
            del data[at]
    return bytes(data)


SLACK_TIMESTAMPS = [
    "9" * 400,
    "9" * 20,
    "-1",
    "1e9",
    "1700000000.5",
    "",
    "\u0661\u0662\u0663",
    "0x10",
    "0",
    "00000000000000000001",
]


def hostile(rng: random.Random) -> Request:
    """One request: a valid body of a random route, kept or broken in a random way."""
    path = rng.choice(ROUTES)
    body = VALID[path](rng)
    kind = rng.choice(
        [
            "valid",
            "valid",
            "nested",
            "number",
            "surrogate",
            "oversized",
            "wrong type",
            "missing field",
            "extra field",
            "utf-8",
            "noise",
            "truncated",
            "not an object",
            "many messages",
            "slack timestamp",
            "unsigned",
        ]
    )
    request = Request("POST", path, kind=kind)
    raw: bytes | None = None
    if kind == "nested":
        body = _anywhere(rng, body, _nested(rng))
    elif kind == "number":
        body = _anywhere(rng, body, _huge_number(rng))
    elif kind == "surrogate":
        target = rng.choice(_paths(body)[1:])
        if rng.random() < 0.2 and isinstance(body, dict):
            body = {**body, "\ud800": 1}  # a lone surrogate as a key
            raw = json.dumps(body).encode()
        else:
            body = _replace(body, target, _lone_surrogate(rng))
    elif kind == "oversized":
        body = _anywhere(rng, body, _oversized(rng))
    elif kind == "wrong type":
        body = _anywhere(rng, body, _wrong_type(rng))
    elif kind == "missing field":
        key = rng.choice(list(body))
        body = {k: v for k, v in body.items() if k != key}
    elif kind == "extra field":
        body = {**body, f"extra_{_uid(rng)}": _wrong_type(rng)}
    elif kind == "not an object":
        raw = rng.choice([b"[]", b'"text"', b"1", b"null", b"", b" ", b"[{}]", b"{}"])
    elif kind == "many messages" and path == "/v1/whatsapp/webhook":
        count = LIMITS["max_messages_per_request"] + rng.choice([-1, 0, 1, 100])
        body = whatsapp(rng, count)
    elif kind == "slack timestamp":
        request.path = path = "/v1/slack/events"
        body = slack(rng)
        request.slack_timestamp = rng.choice(SLACK_TIMESTAMPS)
    elif kind == "unsigned":
        request.sign = False
    if raw is None:
        raw = _dumps(body)
    if kind == "utf-8":
        raw = _invalid_utf8(rng, raw)
    elif kind == "noise":
        raw = _byte_noise(rng, raw)
    elif kind == "truncated":
        raw = raw[: rng.randrange(len(raw))]
    request.body = raw
    request.headers = {"Content-Type": "application/json"}
    return request


def odd_requests(rng: random.Random) -> Request:
    """Requests outside the channel bodies: probes, the handshake, wrong methods, paths."""
    choice = rng.randrange(6)
    if choice == 0:
        query = {"hub.mode": "subscribe", "hub.verify_token": WA_VERIFY, "hub.challenge": "c"}
        if rng.random() < 0.5:
            key = rng.choice(list(query))
            query[key] = rng.choice(["", "x" * 5000, "\udcff", "é", "\x00"])
        return Request("GET", "/v1/whatsapp/webhook", sign=False, query=query)
    if choice == 1:
        return Request("GET", rng.choice(["/healthz", "/readyz"]), sign=False)
    if choice == 2:
        return Request(
            rng.choice(["GET", "PUT", "DELETE", "PATCH"]), rng.choice(ROUTES), sign=False
        )
    if choice == 3:
        path = rng.choice(
            ["/metrics", "/docs", "/redoc", "/openapi.json", "/v1/webhooks/unknown", "/v1/nope"]
        )
        return Request(rng.choice(["GET", "POST"]), path, body=b"{}", sign=False)
    if choice == 4:
        source = rng.choice(["x" * 200, "%ED%A0%80", "..%2F..", "a b"])
        return Request("POST", f"/v1/webhooks/{source}", body=b"{}", sign=False)
    return Request(
        "POST",
        rng.choice(ROUTES),
        body=b"{}",
        sign=False,
        headers={"Authorization": rng.choice(["Bearer", "Basic x", "Bearer " + "x" * 5000])},
    )

"""What every channel's inbound parser returns, and how it says no.

A parser is a pure function: it takes the raw request (body bytes, the headers it
needs, the channel's secrets, the time) and returns the events to produce, or raises
:class:`InboundRejected` with the HTTP status and a reason. No I/O, so each rule is
tested without a server and the gateway only wires HTTP to parsers to the Publisher.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.errors import InboundRejected

# Fixed forever: event ids derived from provider ids must stay the same across releases,
# or a provider retry after an upgrade would not be recognised.
GATEWAY_NAMESPACE = uuid.UUID("6f1c2b1e-5a0d-5c3e-9a57-2d8e4b7c9f10")

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_JSON_DEPTH = 32
"""How deeply objects and arrays may nest in a request body (deeper: 400)."""
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True, slots=True)
class Inbound:
    """One event to produce: its type, key, tenant, fields and (optional) stable id."""

    event_type: str
    conversation_id: str
    tenant_id: str
    data: dict[str, Any]
    channel: str
    event_id: uuid.UUID | None = None
    """Derived from the provider's id when there is one, so a retry yields the same id."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a request turned into: events to produce and parts deliberately ignored."""

    events: tuple[Inbound, ...] = ()
    ignored: tuple[str, ...] = field(default_factory=tuple)


def stable_event_id(*parts: str) -> uuid.UUID:
    """A UUIDv5 from provider ids: the same delivery always gets the same event id."""
    return uuid.uuid5(GATEWAY_NAMESPACE, "\x1f".join(parts))


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def check_signature(header: str | None, prefix: str, secret: str, message: bytes) -> None:
    """Raise 401 unless ``header`` is ``prefix`` + hex HMAC-SHA256 of ``message``."""
    if not header:
        raise InboundRejected(401, "missing signature header")
    expected = prefix + hmac_sha256_hex(secret, message)
    if not hmac.compare_digest(header.strip().lower().encode(), expected.encode()):
        raise InboundRejected(401, "signature does not match the body")


def bearer_tenant(authorization: str | None, tokens: Mapping[str, str]) -> str:
    """The tenant whose token is the bearer token, else 401.

    Every token is compared in constant time, and all of them are compared, so the
    answer's timing says nothing about which tenant or how many characters matched.
    """
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise InboundRejected(401, "missing bearer token (Authorization: Bearer <token>)")
    candidate = presented.strip().encode()
    tenant: str | None = None
    for name, token in tokens.items():
        if hmac.compare_digest(candidate, token.encode()) and tenant is None:
            tenant = name
    if tenant is None:
        raise InboundRejected(401, "bearer token is not valid for any tenant")
    return tenant


def json_object(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """The body as a JSON object, or 400 saying why not.

    Strict before anything reads it: valid UTF-8; standard JSON (no ``NaN`` or
    ``Infinity``, no number too large for a double); objects and arrays nested at most
    ``max_depth`` deep; no lone UTF-16 surrogate (``"\\ud800"``) in any string, since
    such a string cannot be encoded again.
    """
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise InboundRejected(400, f"body is nested deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InboundRejected(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InboundRejected(400, "body must be a JSON object")
    # Cheap tests on the raw body spare the walk for the usual shallow, plain body.
    if body.count(b"{") + body.count(b"[") > max_depth:
        _check_depth(value, max_depth)
    if _SURROGATE_ESCAPE.search(body):
        _check_text(value)
    return value


def parse_timestamp(value: str | None, header: str) -> int:
    """A header's Unix time in whole seconds, or 401 naming the header.

    Only 1 to 12 ASCII digits are read, so an absurd value is refused before any
    arithmetic (a 400-digit integer overflows a float comparison).
    """
    if not value:
        raise InboundRejected(401, f"missing {header}")
    text = value.strip()
    if not _UNIX_SECONDS.fullmatch(text):
        raise InboundRejected(401, f"{header} is not a Unix time in seconds")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:20]}... is out of range")
    return number


def _check_depth(value: Any, max_depth: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise InboundRejected(400, f"body is nested deeper than {max_depth} levels")
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def _check_text(value: Any) -> None:
    stack: list[tuple[Any, str]] = [(value, "body")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise InboundRejected(
                    400, f"{where}: contains a lone UTF-16 surrogate, which is not a character"
                )
        elif isinstance(node, dict):
            for key, child in node.items():
                stack.append((key, f"{where} (a key)"))
                stack.append((child, f"{where}.{key}"[:200]))
        elif isinstance(node, list):
            stack.extend((child, f"{where}.{i}"[:200]) for i, child in enumerate(node))


def validate(model: type[ModelT], value: Any) -> ModelT:
    """``model`` validated from ``value``, or 400 naming the bad fields."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InboundRejected(400, validation_reason(exc)) from exc


def validation_reason(exc: ValidationError, limit: int = 5) -> str:
    problems = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - limit
    return "invalid body: " + "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")

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
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.errors import PipelineError

# Fixed forever: event ids derived from provider ids must stay the same across releases,
# or a provider retry after an upgrade would not be recognised.
GATEWAY_NAMESPACE = uuid.UUID("6f1c2b1e-5a0d-5c3e-9a57-2d8e4b7c9f10")

ModelT = TypeVar("ModelT", bound=BaseModel)


class InboundRejected(PipelineError):
    """The request is refused with ``status`` (400, 401, 403, 404) and a reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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


def json_object(body: bytes) -> dict[str, Any]:
    """The body (UTF-8) as a JSON object, or 400 saying why not."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InboundRejected(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InboundRejected(400, "body must be a JSON object")
    return value


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

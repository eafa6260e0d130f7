"""Chat tokens: what a browser holds instead of its tenant's bearer token.

A tenant's backend asks the gateway for a token for one of its users
(``POST /v1/web/chat-tokens`` with the tenant's bearer token); the browser uses it to
send that user's messages and to read that conversation's stream, nothing else. A token
is ``v1.<payload>.<signature>``: the payload is base64url JSON
``{"t": tenant, "u": user, "c": conversation id, "exp": Unix seconds}`` and the signature
the base64url HMAC-SHA256 of ``v1.<payload>`` under the gateway's chat token secret. It
is not encrypted (the browser may read whose it is) and cannot be revoked before it
expires, so lifetimes are short.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from pipeline.errors import InboundRejected

VERSION = "v1"
MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True, slots=True)
class ChatScope:
    """What a valid chat token allows: one tenant's user, in one conversation."""

    tenant: str
    user_id: str
    conversation_id: str
    expires_at: int


def issue(secret: str, scope: ChatScope) -> str:
    """The signed token for ``scope``."""
    payload = {
        "t": scope.tenant,
        "u": scope.user_id,
        "c": scope.conversation_id,
        "exp": scope.expires_at,
    }
    body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    signed = f"{VERSION}.{body}"
    return f"{signed}.{_b64(_mac(secret, signed))}"


def verify(secret: str, token: str | None, now: float) -> ChatScope:
    """The scope of ``token``; 401 when it is missing, malformed, forged or expired."""
    if not token:
        raise InboundRejected(401, "missing chat token")
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise InboundRejected(401, "chat token is malformed")
    version, _, rest = token.partition(".")
    body, _, signature = rest.partition(".")
    if version != VERSION or not body or not signature:
        raise InboundRejected(401, "chat token is malformed")
    expected = _b64(_mac(secret, f"{VERSION}.{body}"))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise InboundRejected(401, "chat token signature does not match")
    try:
        payload = json.loads(_unb64(body))
        scope = ChatScope(
            str(payload["t"]), str(payload["u"]), str(payload["c"]), int(payload["exp"])
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InboundRejected(401, "chat token is malformed") from None
    if scope.expires_at <= now:
        raise InboundRejected(401, "chat token has expired; ask the application for a new one")
    return scope


def _mac(secret: str, message: str) -> bytes:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

"""A link to the gateway's chat page with a chat token in it, for a development user.

``pipeline up`` prints one when it starts, and ``pipeline chat-token`` makes a new one
when that one has expired (a token lives ``PIPELINE_GATEWAY__CHAT_TOKEN_TTL_SECONDS``,
an hour by default, and cannot be renewed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from pipeline.channels.web import chat_token
from pipeline.channels.web.chat_token import ChatScope
from pipeline.config.sections import GatewaySettings

CHAT_TENANT, CHAT_USER = "demo", "you"
# What signs chat tokens on a stack of `pipeline up` (and `pipeline chat-token` without a secret).
DEVELOPMENT_CHAT_SECRET = "development-chat-token-secret"


@dataclass(frozen=True)
class ChatLink:
    """The chat page's URL with its token, and when the token expires (Unix seconds)."""

    url: str
    token: str
    expires_at: int

    @property
    def expires_text(self) -> str:
        """The expiry in this machine's local time, e.g. ``14:05:09 (in 60 min)``."""
        local = datetime.fromtimestamp(self.expires_at).astimezone()
        minutes = max(0, round((self.expires_at - time.time()) / 60))
        return f"{local:%H:%M:%S %Z} (in {minutes} min)"


def chat_link(
    gateway: GatewaySettings,
    secret: str,
    *,
    tenant: str = CHAT_TENANT,
    user: str = CHAT_USER,
    ttl_seconds: int | None = None,
    base_url: str | None = None,
    now: float | None = None,
) -> ChatLink:
    """A link for ``user`` of ``tenant`` in conversation ``web:<tenant>:<user>``, whose
    token is signed with ``secret`` and lives ``ttl_seconds`` (at most, and by default,
    the gateway's chat_token_ttl_seconds)."""
    longest = gateway.chat_token_ttl_seconds
    lifetime = longest if ttl_seconds is None else min(ttl_seconds, longest)
    expires = int(time.time() if now is None else now) + lifetime
    scope = ChatScope(tenant, user, f"web:{tenant}:{user}", expires)
    token = chat_token.issue(secret, scope)
    base = base_url or f"http://127.0.0.1:{gateway.port}"
    return ChatLink(f"{base.rstrip('/')}/chat#token={token}", token, expires)

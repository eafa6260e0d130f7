"""Web chat for browsers: chat tokens, the chat page's messages, and the stream
(the routes: :mod:`pipeline.services.gateway.routes.web_chat`).

- ``POST /v1/web/chat-tokens`` (tenant bearer token): a short-lived chat token for one
  user's conversation, for the tenant's backend to hand to the browser.
- ``POST /v1/web/chat/messages`` (``Authorization: Bearer <chat token>``): a message of
  that user, answered on the stream.
- ``GET /v1/web/stream``: the conversation's outgoing messages as server-sent events;
  ``?token=<chat token>`` (EventSource cannot set headers), or ``Authorization: Bearer``
  with a chat token or the tenant's token and ``?conversation_id=``. Each event's id is
  the record's position; ``Last-Event-ID`` (or ``?last_event_id=``) resumes after it.
- ``GET /chat``: the chat page (:mod:`pipeline.services.gateway.routes.chat_page`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from sse_starlette import ServerSentEvent

from pipeline.channels.inbound import bearer_tenant, json_object, validate
from pipeline.channels.tenancy import web_conversation
from pipeline.channels.web import chat_token
from pipeline.channels.web import inbound as web
from pipeline.channels.web.chat_token import ChatScope
from pipeline.channels.web.stream_log import Position
from pipeline.errors import InboundRejected
from pipeline.services.gateway.ingest import Gateway
from pipeline.services.gateway.stream_hub import Outgoing, Stream, StreamHub


class WebChat:
    """Authentication of browsers and streams, over the gateway's settings."""

    def __init__(self, gateway: Gateway, hub: StreamHub) -> None:
        self.gateway = gateway
        self.hub = hub
        self.section = gateway.settings.gateway

    def tenant_of(self, authorization: str | None) -> str:
        tokens = {t: s.get_secret_value() for t, s in self.section.web_tokens.items()}
        return bearer_tenant(authorization, tokens)

    def secret(self) -> str:
        secret = self.section.chat_token_secret
        if secret is None:
            raise InboundRejected(404, "chat tokens are not configured on this gateway")
        return secret.get_secret_value()

    def scope(self, token: str | None) -> ChatScope:
        return chat_token.verify(self.secret(), token, time.time())

    def issue(self, authorization: str | None, body: bytes) -> dict[str, object]:
        tenant = self.tenant_of(authorization)
        self.gateway.rate_limits.spend((tenant,))
        wanted = validate(web.ChatTokenRequest, json_object(body))
        conversation = web_conversation(tenant, wanted.conversation_id, wanted.user_id)
        ttl = min(wanted.ttl_seconds or self.section.chat_token_ttl_seconds,
                  self.section.chat_token_ttl_seconds)  # fmt: skip
        scope = ChatScope(tenant, wanted.user_id, conversation, int(time.time()) + ttl)
        token = chat_token.issue(self.secret(), scope)
        return {
            "token": token,
            "conversation_id": conversation,
            "user_id": wanted.user_id,
            "expires_at": scope.expires_at,
            "chat_path": f"/chat#token={token}",
        }

    def stream_scope(
        self, token: str | None, authorization: str | None, conversation_id: str | None
    ) -> tuple[str, str]:
        """(tenant, conversation) a stream request may read; 401 or 403 otherwise."""
        bearer = None
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and presented.strip():
            bearer = presented.strip()
        if token is None and bearer is not None and not bearer.startswith(chat_token.VERSION + "."):
            tenant = self.tenant_of(authorization)
            if conversation_id is None:
                raise InboundRejected(400, "name the conversation: ?conversation_id=<name>")
            return tenant, web_conversation(tenant, conversation_id, "")
        scope = self.scope(token if token is not None else bearer)
        if conversation_id is not None and conversation_id not in (
            scope.conversation_id,
            scope.conversation_id.removeprefix(f"web:{scope.tenant}:"),
        ):
            raise InboundRejected(403, "the chat token is for another conversation")
        return scope.tenant, scope.conversation_id

    def resume_after(self, conversation_id: str, text: str | None) -> Position | None:
        if text is None or not text.strip():
            return None
        position = Position.parse(text)
        if position is None:
            raise InboundRejected(400, "Last-Event-ID is not an event id of this stream")
        if position.partition != self.hub.partition_of(conversation_id):
            raise InboundRejected(400, "Last-Event-ID is not an event id of this conversation")
        return position

    async def events(
        self, stream: Stream, after: Position | None
    ) -> AsyncIterator[ServerSentEvent]:
        """Catch up after ``after`` (from Kafka), then the live records; ``stream`` is
        registered before the catch-up reads, and closed when the client goes."""
        metrics = self.gateway.metrics
        metrics.streams_open.inc()
        try:
            if after is not None:
                stream.last_offset = after.offset
                missed, gap = await self.hub.catch_up(stream, after)
                if gap:
                    yield ServerSentEvent(data='{"reason":"some messages expired"}', event="gap")
                for item in missed:
                    if stream.fresh(item):
                        metrics.streamed.labels("catch_up").inc()
                        yield _event(item)
            while True:
                live = await stream.queue.get()
                if live is None:  # fell behind or the gateway stops: the client reconnects
                    return
                if stream.fresh(live):
                    metrics.streamed.labels("live").inc()
                    yield _event(live)
        finally:
            metrics.streams_open.dec()
            self.hub.close(stream)


def _event(item: Outgoing) -> ServerSentEvent:
    return ServerSentEvent(data=item.data(), id=str(item.position), event="message")

"""Web chat for browsers: chat tokens, the chat page's messages, and the stream
(the routes: :mod:`pipeline.services.gateway.routes.web_chat`).

- ``POST /v1/web/chat-tokens`` (tenant bearer token): a short-lived chat token for one
  user's conversation, for the tenant's backend to hand to the browser.
- ``POST /v1/web/chat/messages`` (``Authorization: Bearer <chat token>``): a message of
  that user, answered on the stream.
- ``GET /v1/web/chat/history`` (``Authorization: Bearer <chat token>``): the
  conversation so far, and the stream mark it ends at (:mod:`.chat_history`).
- ``GET /v1/web/stream``: the conversation's outgoing messages as server-sent events
  (``message``), the answers being written (``delta``), and whether Kafka answers
  (``status``); ``?token=<chat token>`` (EventSource cannot set headers), or
  ``Authorization: Bearer`` with a chat token or the tenant's token and
  ``?conversation_id=``. Each event's id is the stream's mark; ``Last-Event-ID`` (or
  ``?last_event_id=``) resumes after it.
- ``GET /chat``: the chat page (:mod:`pipeline.services.gateway.routes.chat_page`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from sse_starlette import ServerSentEvent

from pipeline.channels.inbound import bearer_tenant, json_object, validate
from pipeline.channels.tenancy import web_conversation
from pipeline.channels.web import chat_token
from pipeline.channels.web import inbound as web
from pipeline.channels.web.chat_token import ChatScope
from pipeline.channels.web.stream_log import StreamMark
from pipeline.errors import InboundRejected
from pipeline.services.gateway.chat_history import ChatHistory
from pipeline.services.gateway.ingest import Gateway
from pipeline.services.gateway.stream_hub import Stream, StreamHub
from pipeline.services.gateway.stream_items import Delta, Item


class WebChat:
    """Authentication of browsers and streams, over the gateway's settings."""

    def __init__(self, gateway: Gateway, hub: StreamHub) -> None:
        self.gateway = gateway
        self.hub = hub
        self.section = gateway.settings.gateway
        self.history = ChatHistory(gateway.settings, gateway.readiness.connection.client_config())

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

    def resume_after(self, conversation_id: str, text: str | None) -> StreamMark | None:
        if text is None or not text.strip():
            return None
        mark = StreamMark.parse(text)
        if mark is None:
            raise InboundRejected(400, "Last-Event-ID is not an event id of this stream")
        if mark.partition != self.hub.partition_of(conversation_id):
            raise InboundRejected(400, "Last-Event-ID is not an event id of this conversation")
        return mark

    async def conversation(self, authorization: str | None) -> dict[str, Any]:
        """The chat token's conversation so far, and the mark its stream resumes from."""
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            raise InboundRejected(401, "missing chat token (Authorization: Bearer <token>)")
        scope = self.scope(presented.strip())
        self.gateway.rate_limits.spend((scope.tenant,))
        await self.hub.ready()
        publisher = self.gateway.publisher
        if publisher is None:
            raise InboundRejected(503, "the gateway is not connected to Kafka yet")
        said, mark, truncated = await self.history.read(publisher.serde, scope.conversation_id)
        return {
            "conversation_id": scope.conversation_id,
            "messages": [s.as_json() for s in said],
            "last_event_id": str(mark),
            "truncated": truncated,
        }

    async def events(
        self, stream: Stream, after: StreamMark | None
    ) -> AsyncIterator[ServerSentEvent]:
        """Catch up after ``after`` (from Kafka), then the live records; ``stream`` is
        registered before the catch-up reads, and closed when the client goes. Whether
        Kafka answers is sent when it does not, and again whenever that changes."""
        metrics = self.gateway.metrics
        metrics.streams_open.inc()
        readiness = self.gateway.readiness
        kafka = readiness.kafka_answers
        if after is not None:  # every event's id from now on resumes from here
            stream.last_offset = after.offset
            if after.delta is not None:
                stream.last_delta = after.delta
        try:
            if not kafka:  # the page takes Kafka to answer until told otherwise
                yield _status(stream, kafka)
            if after is not None:
                missed, gap = await self.hub.catch_up(stream, after)
                if gap:
                    yield ServerSentEvent(data='{"reason":"some messages expired"}', event="gap")
                for item in missed:
                    if stream.fresh(item):
                        yield self._event(stream, item, "catch_up")
            while True:
                try:
                    live = await asyncio.wait_for(
                        stream.queue.get(), self.section.stream_status_seconds
                    )
                except TimeoutError:
                    if readiness.kafka_answers != kafka:
                        kafka = readiness.kafka_answers
                        yield _status(stream, kafka)
                    continue
                if live is None:  # fell behind or the gateway stops: the client reconnects
                    return
                if stream.fresh(live):
                    yield self._event(stream, live, "live")
        finally:
            metrics.streams_open.dec()
            self.hub.close(stream)

    def _event(self, stream: Stream, item: Item, source: str) -> ServerSentEvent:
        metrics = self.gateway.metrics
        if isinstance(item, Delta):
            metrics.streamed_deltas.labels(source).inc()
            if item.sequence == 0 and item.ingress_at is not None and source == "live":
                waited = (datetime.now(UTC) - item.ingress_at).total_seconds()
                metrics.first_delta.observe(max(0.0, waited))
            return ServerSentEvent(data=item.data(), id=str(stream.mark), event="delta")
        metrics.streamed.labels(source).inc()
        return ServerSentEvent(data=item.data(), id=str(stream.mark), event="message")


def _status(stream: Stream, kafka: bool) -> ServerSentEvent:
    """Whether the pipeline behind the stream can take and answer messages now."""
    data = json.dumps({"kafka": "up" if kafka else "down"})
    return ServerSentEvent(data=data, id=str(stream.mark), event="status")

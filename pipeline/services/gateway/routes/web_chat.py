"""The web chat's routes: chat tokens, the chat page's messages, and the stream
(:mod:`pipeline.services.gateway.web_chat` says what each does)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from pipeline.channels.inbound import Parsed
from pipeline.channels.web import inbound as web
from pipeline.errors import InboundRejected
from pipeline.services.gateway.api import error_responses
from pipeline.services.gateway.web_chat import WebChat

STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def router(chat: WebChat) -> APIRouter:
    routes = APIRouter(tags=["web chat"])
    gateway = chat.gateway
    responses = error_responses(400, 401, 403, 404, 429)

    @routes.post("/v1/web/chat-tokens", status_code=201, responses=responses)
    async def chat_tokens(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        """A chat token for one user's conversation (``Authorization: Bearer <tenant
        token>``; body ``{"user_id", "conversation_id"?, "ttl_seconds"?}``), for the
        tenant's backend to give to that user's browser."""
        try:
            return JSONResponse(chat.issue(authorization, await request.body()), status_code=201)
        except InboundRejected as exc:
            return gateway.rejected("web", exc)

    @routes.post("/v1/web/chat/messages", status_code=202, responses=responses)
    async def chat_message(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        """A message from the chat page (``Authorization: Bearer <chat token>``; body
        ``{"text", "message_id"?}``); the answer comes on the stream."""

        def parse(body: bytes) -> Parsed:
            scheme, _, presented = (authorization or "").partition(" ")
            if scheme.lower() != "bearer":
                raise InboundRejected(401, "missing chat token (Authorization: Bearer <token>)")
            return web.parse_chat(body, chat.scope(presented.strip()))

        return await gateway.handle("web", request, parse)

    @routes.get("/v1/web/chat/history", responses=error_responses(401, 429, 503))
    async def chat_history(authorization: Annotated[str | None, Header()] = None) -> Response:
        """The chat token's conversation so far (``Authorization: Bearer <chat token>``):
        ``{conversation_id, messages: [{role: user|bot, text, at, id, stream_id?}],
        last_event_id, truncated}``; the stream resumes after ``last_event_id``."""
        try:
            return JSONResponse(await chat.conversation(authorization))
        except InboundRejected as exc:
            return gateway.rejected("web", exc)

    @routes.get("/v1/web/stream", responses=responses)
    async def stream(
        request: Request,
        token: Annotated[str | None, Query(max_length=4096)] = None,
        conversation_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
        last_event_id: Annotated[str | None, Query(max_length=64)] = None,
        authorization: Annotated[str | None, Header()] = None,
        last_event_id_header: Annotated[
            str | None, Header(alias="Last-Event-ID", max_length=64)
        ] = None,
    ) -> Response:
        """The conversation's outgoing messages as server-sent events (``message``: JSON
        ``{conversation_id, response_id, text, in_reply_to, proactive, stream_id}``), the
        answers being written (``delta``: ``{conversation_id, stream_id, sequence, text,
        interrupted}``), whether Kafka answers (``status``: ``{kafka: up|down}``, sent when it
        does not and whenever that changes), and
        ``gap`` when a reconnect could not read everything; each event's id is the
        stream's mark, ``<partition>-<offset>.<delta offset>``."""
        try:
            tenant, conversation = chat.stream_scope(token, authorization, conversation_id)
            gateway.rate_limits.spend((tenant,))
            await chat.hub.ready()
            after = chat.resume_after(conversation, last_event_id_header or last_event_id)
            client = request.client.host if request.client is not None else "unknown"
            opened = chat.hub.open(tenant, conversation, client)
        except InboundRejected as exc:
            return gateway.rejected("web", exc)
        return EventSourceResponse(
            chat.events(opened, after),
            headers=STREAM_HEADERS,
            ping=chat.section.stream_heartbeat_seconds,
            # Closes the stream when the generator never ran (the client left first).
            background=BackgroundTask(chat.hub.close, opened),
        )

    return routes

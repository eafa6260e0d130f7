"""The conversations: the list, one conversation, and what an operator does in it
(take it, reply, give it back)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from pipeline.http.json_errors import error_response
from pipeline.services.console.site import Console, conversation_url, operator_of
from pipeline.services.console.view import STATES


def router(console: Console) -> APIRouter:
    routes = APIRouter()

    @routes.get("/")
    async def conversations(
        request: Request,
        tenant: Annotated[str, Query(max_length=64)] = "",
        channel: Annotated[str, Query(max_length=32)] = "",
        state: Annotated[str, Query(max_length=32)] = "",
    ) -> Response:
        view = console.view
        return console.page(
            request,
            "conversations.html",
            conversations=view.listed(tenant, channel, state)[:500],
            tenants=view.tenants(),
            channels=view.channels(),
            states=STATES,
            tenant=tenant,
            channel=channel,
            state=state,
        )

    @routes.get("/conversations/{conversation_id:path}")
    async def conversation(request: Request, conversation_id: str) -> Response:
        found = console.view.conversations.get(conversation_id)
        if found is None:
            return error_response(404, f"no conversation {conversation_id!r} in the console's view")
        return console.page(request, "conversation.html", c=found)

    @routes.post("/conversations/{conversation_id:path}/take")
    async def take(request: Request, conversation_id: str) -> Response:
        operator = operator_of(request)
        return await console.act(
            request,
            conversation_url(conversation_id),
            lambda: console.actions.take(operator, conversation_id),
        )

    @routes.post("/conversations/{conversation_id:path}/reply")
    async def reply(
        request: Request, conversation_id: str, text: Annotated[str, Form(max_length=32768)]
    ) -> Response:
        operator = operator_of(request)
        return await console.act(
            request,
            conversation_url(conversation_id),
            lambda: console.actions.reply(operator, conversation_id, text),
        )

    @routes.post("/conversations/{conversation_id:path}/release")
    async def release(
        request: Request,
        conversation_id: str,
        note: Annotated[str, Form(max_length=4096)] = "",
    ) -> Response:
        operator = operator_of(request)
        return await console.act(
            request,
            conversation_url(conversation_id),
            lambda: console.actions.release(operator, conversation_id, note),
        )

    return routes

"""The conversations: the list, one conversation, and what an operator does in it
(take it, reply, give it back)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from pipeline.services.console.access import Scope
from pipeline.services.console.site import Console, conversation_url
from pipeline.services.console.view import STATES


def router(console: Console) -> APIRouter:
    routes = APIRouter()

    @routes.get("/")
    async def conversations(
        request: Request,
        who: Scope,
        tenant: Annotated[str, Query(max_length=64)] = "",
        channel: Annotated[str, Query(max_length=32)] = "",
        state: Annotated[str, Query(max_length=32)] = "",
    ) -> Response:
        view = console.view
        visible = who.visible(view.listed())
        listed = who.visible(view.listed(tenant, channel, state))
        return console.page(
            request,
            "conversations.html",
            conversations=listed[:500],
            tenants=who.tenant_choices(c.tenant for c in visible),
            channels=sorted({c.channel for c in visible if c.channel}),
            states=STATES,
            tenant=tenant,
            channel=channel,
            state=state,
        )

    @routes.get("/conversations/{conversation_id:path}")
    async def conversation(request: Request, who: Scope, conversation_id: str) -> Response:
        found = who.one(
            console.view.conversations.get(conversation_id),
            f"no conversation {conversation_id!r} in the console's view",
        )
        return console.page(request, "conversation.html", c=found)

    @routes.post("/conversations/{conversation_id:path}/take")
    async def take(request: Request, who: Scope, conversation_id: str) -> Response:
        return await console.act(
            request,
            conversation_url(conversation_id),
            lambda: console.actions.take(who, conversation_id),
        )

    def again(
        request: Request, who: Scope, conversation_id: str, **typed: str
    ) -> Callable[[str], Response | None]:
        """The conversation's page with what the operator typed and why it was refused
        (none when the conversation is not theirs or not in view: the error page)."""

        def page(error: str) -> Response | None:
            found = console.view.conversations.get(conversation_id)
            if found is None or not who.sees(found.tenant):
                return None
            return console.page(
                request, "conversation.html", c=found, typed=typed, notice=f"Not done: {error}"
            )

        return page

    @routes.post("/conversations/{conversation_id:path}/reply")
    async def reply(
        request: Request,
        who: Scope,
        conversation_id: str,
        text: Annotated[str, Form(max_length=32768)],
    ) -> Response:
        return await console.act(
            request,
            conversation_url(conversation_id),
            lambda: console.actions.reply(who, conversation_id, text),
            again(request, who, conversation_id, reply=text),
        )

    @routes.post("/conversations/{conversation_id:path}/release")
    async def release(
        request: Request,
        who: Scope,
        conversation_id: str,
        note: Annotated[str, Form(max_length=4096)] = "",
    ) -> Response:
        return await console.act(
            request,
            conversation_url(conversation_id),
            lambda: console.actions.release(who, conversation_id, note),
            again(request, who, conversation_id, release_note=note),
        )

    return routes

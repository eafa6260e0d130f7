"""Tool calls whose outcome is unknown (an at-most-once tool stopped while it ran), and
the operator's decision on each: done or failed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from pipeline.services.console.access import Scope
from pipeline.services.console.site import Console, local

PAGE = "/uncertain"


def router(console: Console) -> APIRouter:
    routes = APIRouter()

    @routes.get(PAGE)
    async def uncertain(request: Request, who: Scope) -> Response:
        calls = who.visible(console.view.uncertain_calls())
        return console.page(request, "uncertain.html", calls=calls, back=PAGE)

    @routes.post(PAGE + "/{call_id}/decide")
    async def decide(
        request: Request,
        who: Scope,
        call_id: str,
        outcome: Annotated[str, Form(max_length=16)],
        result_json: Annotated[str, Form(max_length=32768)] = "",
        note: Annotated[str, Form(max_length=4096)] = "",
        back: Annotated[str, Form(max_length=2048)] = PAGE,
    ) -> Response:
        """Mark the call done or failed (``outcome``), with what the operator found
        (``note``) and what the tool did (``result_json``); a browser goes ``back`` (the
        page the form was on), or, refused, sees that page's form again with what it
        typed and why."""
        back = local(back)

        def again(error: str) -> Response | None:
            typed = {call_id: {"note": note, "result_json": result_json, "error": error}}
            call = console.view.uncertain_call(call_id)
            if call is None or not who.sees(call.tenant):
                return None  # decided meanwhile, or not theirs: the error page
            conversation = console.view.conversations.get(call.conversation_id)
            if back != PAGE and conversation is not None:
                return console.page(
                    request, "conversation.html", c=conversation, typed=typed, hold=True
                )
            calls = who.visible(console.view.uncertain_calls())
            return console.page(
                request, "uncertain.html", calls=calls, back=PAGE, typed=typed, hold=True
            )

        return await console.act(
            request,
            back,
            lambda: console.actions.mark(who, call_id, outcome, result_json, note),
            again,
        )

    return routes

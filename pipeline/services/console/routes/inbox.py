"""The handoff inbox (conversations waiting for a person) and the pending approvals,
with the operator's decision on each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from pipeline.services.console.access import Scope
from pipeline.services.console.site import Console


def router(console: Console) -> APIRouter:
    routes = APIRouter()

    @routes.get("/inbox")
    async def inbox(request: Request, who: Scope) -> Response:
        return console.page(request, "inbox.html", conversations=who.visible(console.view.inbox()))

    @routes.get("/approvals")
    async def approvals(request: Request, who: Scope) -> Response:
        pending = who.visible(console.view.pending_approvals())
        return console.page(request, "approvals.html", approvals=pending)

    @routes.post("/approvals/{approval_id}/decide")
    async def decide(
        request: Request,
        who: Scope,
        approval_id: str,
        decision: Annotated[str, Form(max_length=16)],
        arguments_json: Annotated[str, Form(max_length=32768)] = "",
        note: Annotated[str, Form(max_length=4096)] = "",
        internal_reason: Annotated[str, Form(max_length=4096)] = "",
    ) -> Response:
        """Approve or deny (``decision``), maybe with edited arguments; ``note`` is what
        the customer may be told, ``internal_reason`` stays with the operators. A refused
        decision (a bad edit, Kafka down) shows the form again with what was typed."""

        def again(error: str) -> Response:
            pending = who.visible(console.view.pending_approvals())
            typed = {
                approval_id: {
                    "arguments_json": arguments_json,
                    "note": note,
                    "internal_reason": internal_reason,
                    "error": error,
                }
            }
            shown = any(a.approval_id == approval_id for a in pending)
            notice = None if shown else f"Not done: {error}"
            return console.page(
                request, "approvals.html", approvals=pending, typed=typed, notice=notice, hold=True
            )

        return await console.act(
            request,
            "/approvals",
            lambda: console.actions.decide(
                who, approval_id, decision, arguments_json, note, internal_reason
            ),
            again,
        )

    return routes

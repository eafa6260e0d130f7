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
    ) -> Response:
        return await console.act(
            request,
            "/approvals",
            lambda: console.actions.decide(who, approval_id, decision, arguments_json, note),
        )

    return routes

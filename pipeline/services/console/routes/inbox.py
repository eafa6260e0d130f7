"""The handoff inbox (conversations waiting for a person) and the pending approvals,
with the operator's decision on each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from pipeline.services.console.site import Console, operator_of


def router(console: Console) -> APIRouter:
    routes = APIRouter()

    @routes.get("/inbox")
    async def inbox(request: Request) -> Response:
        return console.page(request, "inbox.html", conversations=console.view.inbox())

    @routes.get("/approvals")
    async def approvals(request: Request) -> Response:
        return console.page(request, "approvals.html", approvals=console.view.pending_approvals())

    @routes.post("/approvals/{approval_id}/decide")
    async def decide(
        request: Request,
        approval_id: str,
        decision: Annotated[str, Form(max_length=16)],
        arguments_json: Annotated[str, Form(max_length=32768)] = "",
        note: Annotated[str, Form(max_length=4096)] = "",
    ) -> Response:
        operator = operator_of(request)
        return await console.act(
            request,
            "/approvals",
            lambda: console.actions.decide(operator, approval_id, decision, arguments_json, note),
        )

    return routes

"""An app wired from routers has their routes as its own, in order, and serves them."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from pipeline.http.routers import add_routers


def greeting(word: str) -> APIRouter:
    router = APIRouter(tags=[word])

    @router.get(f"/{word}", status_code=201)
    async def hello() -> dict[str, str]:
        return {"said": word}

    return router


async def test_the_routes_of_every_router_are_the_apps_own_in_order() -> None:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    add_routers(app, greeting("hello"), greeting("bye"))
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert [(r.path, r.tags, r.status_code) for r in routes] == [
        ("/hello", ["hello"], 201),
        ("/bye", ["bye"], 201),
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        answer = await http.get("/bye")
    assert (answer.status_code, answer.json()) == (201, {"said": "bye"})

"""An app made of routers: each route group is an APIRouter of its own, put on the app.

:func:`add_routers` puts the routes themselves on the app, in order, rather than
``app.include_router``: recent FastAPI versions keep an included router as one entry
of ``app.routes``, so whatever walks ``app.routes`` (the console's check that every
route is behind its guard) would no longer see its routes.

A route keeps what its router gave it (path, methods, status code, tags, documentation)
and nothing of the app's own settings: the app's dependency overrides, dependencies and
default response class do not reach it, so apps wired this way set none.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI


def add_routers(app: FastAPI, *routers: APIRouter) -> None:
    """Put every route of ``routers`` on ``app``, in the order given."""
    for router in routers:
        app.router.routes.extend(router.routes)

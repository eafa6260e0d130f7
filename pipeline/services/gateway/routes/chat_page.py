"""The chat page the gateway serves: plain HTML, a script and a stylesheet, no build step.

The page takes its chat token from the URL's fragment (``/chat#token=...``, which
browsers do not send to servers or put in Referer headers), keeps it in the tab's
session storage, sends messages with it and reads the stream. Every text is inserted
with ``textContent``; the Content-Security-Policy allows only the gateway's own script,
style and connections, so even a text that slipped into HTML could not run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_ASSETS = {
    "/chat": ("index.html", "text/html; charset=utf-8"),
    "/chat/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/chat/chat.css": ("chat.css", "text/css; charset=utf-8"),
}


def router() -> APIRouter:
    """``GET /chat`` and its script and stylesheet, read once."""
    pages = APIRouter()
    folder = files("pipeline.services.gateway") / "chat"
    for path, (name, media_type) in _ASSETS.items():
        pages.get(path, include_in_schema=False)(_serve((folder / name).read_bytes(), media_type))
    return pages


def _serve(body: bytes, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def asset() -> Response:
        return Response(body, media_type=media_type, headers=HEADERS)

    return asset

"""The operator console on a real broker, as its integration tests drive it: settings
with two operators (ada signs in with a password, bob is an API client with a token),
the calculator as the tool catalog advertises it, signing in through the form, reading a
page until the live view shows something, and listening to the live stream."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from pipeline.config import Settings
from pipeline.services.console.passwords import hash_password
from pipeline.toolbox.catalog import CatalogEntry
from tests.integration.runtime_support import settings_for

CONSOLE_TOPICS = ("tool_catalog", "dead_letters", "dead_letter_redrives", "console_sessions")
"""The topics the console reads or writes besides the view's."""
PASSWORD = "correct horse battery staple"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
"""What a browser accepts when it asks for a page or posts a form."""
TOKEN = "api-token-of-bob"
CALCULATOR = CatalogEntry(
    "calculator",
    "Evaluate arithmetic.",
    {
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
        "additionalProperties": False,
    },
    "tools",
    "builtin",
)


SCOPED_OPERATORS = {
    "carol": {
        "password_hash": hash_password(PASSWORD, time_cost=1, memory_cost=8192),
        "tenants": ["t1"],
        "role": "agent",
    },
    "t1-viewer": {"token": "tok-t1-viewer", "tenants": ["t1"], "role": "viewer"},
    "t1-admin": {"token": "tok-t1-admin", "tenants": ["t1"], "role": "admin"},
    "t2-admin": {"token": "tok-t2-admin", "tenants": ["t2"], "role": "admin"},
}
"""Operators of one tenant each (carol signs in with PASSWORD, the others use tokens)."""


def bearer(operator: str) -> dict[str, str]:
    """The Authorization header of one of :data:`SCOPED_OPERATORS`."""
    return {"Authorization": f"Bearer {SCOPED_OPERATORS[operator]['token']}"}


def console_settings(bootstrap: str, prefix: str, **console: Any) -> Settings:
    return settings_for(
        bootstrap,
        prefix,
        console={
            "operators": {
                "ada": {"password_hash": hash_password(PASSWORD, time_cost=1, memory_cost=8192)},
                "bob": {"token": TOKEN},
                **SCOPED_OPERATORS,
            },
            "session_secret": "test-session-secret",
            "cookie_secure": False,
            "lookback_hours": 1,
            **console,
        },
        tools={"catalog_refresh_seconds": 0.2},
    )


async def signed_in(http: httpx.AsyncClient, operator: str = "ada") -> str:
    """Sign in as ``operator`` through the form; the CSRF token of the session."""
    answer = await http.post("/signin", data={"operator": operator, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
    page = await http.get("/inbox")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def page_until(
    http: httpx.AsyncClient, path: str, wanted: Callable[[str], bool], seconds: float = 30
) -> str:
    """GET ``path`` until its text satisfies ``wanted`` (the reader is live)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        text = (await http.get(path, headers={"X-Console-Fragment": "1"})).text
        if wanted(text):
            return text
        assert asyncio.get_running_loop().time() < deadline, f"{path} never showed it: {text}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def listening(http: httpx.AsyncClient) -> AsyncIterator[list[tuple[str, str]]]:
    """The live stream's (event, data) pairs, as they come."""
    heard: list[tuple[str, str]] = []

    async def listen() -> None:
        async with http.stream("GET", "/stream", headers={"Accept": "text/event-stream"}) as s:
            kind = ""
            async for line in s.aiter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    heard.append((kind, line.split(":", 1)[1].strip()))

    task = asyncio.create_task(listen())
    try:
        yield heard
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await task

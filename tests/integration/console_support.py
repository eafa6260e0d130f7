"""The operator console on a real broker, as its integration tests drive it: settings
with two operators (ada signs in with a password, bob is an API client with a token),
the calculator as the tool catalog advertises it, signing in through the form, and
reading a page until the live view shows something."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx

from pipeline.config import Settings
from pipeline.services.console.auth import hash_password
from pipeline.toolbox.catalog import CatalogEntry
from tests.integration.runtime_support import settings_for

PASSWORD = "correct horse battery staple"
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


def console_settings(bootstrap: str, prefix: str) -> Settings:
    return settings_for(
        bootstrap,
        prefix,
        console={
            "operators": {
                "ada": {"password_hash": hash_password(PASSWORD, n=2**10)},
                "bob": {"token": TOKEN},
            },
            "session_secret": "test-session-secret",
            "cookie_secure": False,
            "lookback_hours": 1,
        },
        tools={"catalog_refresh_seconds": 0.2},
    )


async def signed_in(http: httpx.AsyncClient) -> str:
    """Sign in as ada through the form; the CSRF token of the session."""
    answer = await http.post("/signin", data={"operator": "ada", "password": PASSWORD})
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

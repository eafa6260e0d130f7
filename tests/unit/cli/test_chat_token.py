"""`pipeline chat-token`: a fresh link to the chat page, and when its token expires."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from pipeline.channels.web import chat_token
from pipeline.cli import main
from pipeline.dev.stack.chat_link import DEVELOPMENT_CHAT_SECRET


def test_a_link_signed_with_the_development_secret_by_default() -> None:
    result = CliRunner().invoke(main, ["chat-token", "--user", "ada"], env={})
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    assert url.startswith("http://127.0.0.1:8080/chat#token=v1.")
    scope = chat_token.verify(DEVELOPMENT_CHAT_SECRET, url.split("#token=")[1], time.time())
    assert (scope.tenant, scope.user_id, scope.conversation_id) == ("demo", "ada", "web:demo:ada")
    assert 3500 < scope.expires_at - time.time() <= 3600
    assert "expires at" in result.stderr and "(in 60 min)" in result.stderr
    assert "development secret" in result.stderr


def test_the_configured_secret_ttl_and_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "a-configured-chat-token-secret"
    monkeypatch.setenv("PIPELINE_GATEWAY__CHAT_TOKEN_SECRET", secret)
    monkeypatch.setenv("PIPELINE_GATEWAY__CHAT_TOKEN_TTL_SECONDS", "600")
    args = ["chat-token", "--tenant", "acme", "--ttl", "3600", "--token-only"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    scope = chat_token.verify(secret, result.stdout.strip(), time.time())
    assert scope.tenant == "acme"
    assert scope.expires_at - time.time() <= 600  # never beyond the gateway's longest
    linked = CliRunner().invoke(main, ["chat-token", "--gateway-url", "https://chat.example"])
    assert linked.stdout.startswith("https://chat.example/chat#token=v1.")

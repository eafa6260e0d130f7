"""The local stand-in for web callbacks accepts only callbacks signed with its secret."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from pipeline.channels.web import signature
from pipeline.dev.kafka import free_port
from pipeline.dev.stack.receiver import Receivers

SECRET = "stack-callback-secret"


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    started = Receivers(free_port(), free_port(), SECRET)
    started.start()
    yield started
    started.stop()


def test_the_web_stand_in_keeps_signed_callbacks_and_refuses_the_rest(
    receivers: Receivers,
) -> None:
    url = f"{receivers.base_url}/web/callback"
    body = json.dumps({"conversation_id": "c1", "text": "signed"}).encode()
    forged = json.dumps({"conversation_id": "c1", "text": "forged"}).encode()
    with httpx.Client(timeout=5) as client:
        unsigned = client.post(url, content=body)
        wrong_key = client.post(url, content=body, headers=signature.sign("guess", body))
        replaced = client.post(url, content=forged, headers=signature.sign(SECRET, body))
        signed = client.post(url, content=body, headers=signature.sign(SECRET, body))
    assert [r.status_code for r in (unsigned, wrong_key, replaced)] == [401, 401, 401]
    assert unsigned.json() == {"error": "bad or missing callback signature"}
    assert signed.status_code == 200
    assert [(d.channel, d.text) for d in receivers.inbox.items()] == [("web", "signed")]

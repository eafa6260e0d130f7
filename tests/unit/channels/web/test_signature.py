"""Signed web callbacks: the package's verifier, and the documentation's, on a real https
callback."""

from __future__ import annotations

import re
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme
from pydantic import SecretStr

from pipeline.channels.outbound import Sent
from pipeline.channels.web import signature
from pipeline.channels.web.outbound import WebSender
from pipeline.egress import EgressPolicy, guarded_client
from pipeline.events.model import Event, Metadata
from tests.paths import REPO

PAGE = REPO / "docs" / "web-callbacks.md"
SECRET = "whsec-tenant-t1"
BODY = b'{"conversation_id":"c1","text":"hi"}'


def readme_verifier() -> Callable[..., bool]:
    """The ``verify`` function of the documentation's "Verifying a callback" example, run
    as is."""
    text = PAGE.read_text()
    section = text[text.index("## Verifying a callback") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, "docs/web-callbacks.md has no Python example under 'Verifying'"
    assert len([line for line in code.group(1).splitlines() if line.strip()]) <= 10
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), str(PAGE), "exec"), namespace)
    verify: Callable[..., bool] = namespace["verify"]
    return verify


# --------------------------------------------------------------------------- scheme


def test_a_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    headers = signature.sign(SECRET, BODY, now=1_718_000_000)
    assert headers["X-Pipeline-Timestamp"] == "1718000000"
    assert headers["X-Pipeline-Signature"] == (
        "v1=" + signature.signature(SECRET, 1_718_000_000, BODY)
    )
    assert signature.verify(SECRET, headers, BODY, now=1_718_000_000)


@pytest.mark.parametrize("skew", [-301, 301, 10**9])
def test_a_timestamp_outside_the_tolerance_fails(skew: int) -> None:
    headers = signature.sign(SECRET, BODY, now=1_718_000_000)
    assert not signature.verify(SECRET, headers, BODY, now=1_718_000_000 + skew)
    assert signature.verify(SECRET, headers, BODY, now=1_718_000_000 + 299)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Pipeline-Timestamp": "1718000000"},
        {"X-Pipeline-Timestamp": "x", "X-Pipeline-Signature": "v1=00"},
        {"X-Pipeline-Timestamp": "9" * 400, "X-Pipeline-Signature": "v1=00"},
        {
            "X-Pipeline-Timestamp": "\uff11\uff17\uff11\uff18" + "\uff10" * 6,
            "X-Pipeline-Signature": "v1=00",
        },
        {"X-Pipeline-Timestamp": "1718000000", "X-Pipeline-Signature": "v1=é"},
        {"X-Pipeline-Timestamp": "1718000000", "X-Pipeline-Signature": "v0=abc"},
    ],
)
def test_missing_or_malformed_headers_fail_without_raising(headers: dict[str, str]) -> None:
    assert not signature.verify(SECRET, headers, BODY, now=1_718_000_000)


def test_one_matching_value_is_enough_during_a_rotation() -> None:
    signed = signature.sign("new-secret", BODY, now=1_718_000_000)
    old = signature.signature("old-secret", 1_718_000_000, BODY)
    headers = {**signed, "X-Pipeline-Signature": f"v1={old}, {signed['X-Pipeline-Signature']}"}
    assert signature.verify("new-secret", headers, BODY, now=1_718_000_000)
    assert signature.verify("old-secret", headers, BODY, now=1_718_000_000)
    assert not signature.verify("other", headers, BODY, now=1_718_000_000)


# --------------------------------------------------------------------------- https callback


@dataclass
class HttpsReceiver:
    """An https server on 127.0.0.1 with a certificate for ``localhost`` from a test CA."""

    ca: trustme.CA
    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handle(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.seen.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "13")
                self.end_headers()
                self.wfile.write(b'{"id": "r-1"}')

            def log_message(self, format: str, *args: Any) -> None:
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost").configure_cert(context)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.server.server_address[1]}/callbacks/t1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def https_receiver() -> Iterator[HttpsReceiver]:
    receiver = HttpsReceiver(trustme.CA())
    yield receiver
    receiver.close()


async def test_an_https_callback_is_signed_and_the_readme_verifier_accepts_it(
    https_receiver: HttpsReceiver,
) -> None:
    # https only (http refused); 127.0.0.0/8 allowed because the receiver is local. The
    # URL names localhost: the connection goes to the checked 127.0.0.1 while TLS
    # verifies the certificate for the name.
    policy = EgressPolicy.of(False, ["127.0.0.0/8"])
    trust = ssl.create_default_context()
    https_receiver.ca.configure_trust(trust)
    metadata = Metadata.new("response_ready", "conv-9", tenant_id="t1", producer="agent")
    event = Event(
        metadata,
        {
            "reply_to": {"channel": "web", "address": https_receiver.url, "thread_id": None},
            "text": "Signed: 12*7 = 84",
            "in_reply_to": None,
            "proactive": False,
            "ingress_at": None,
        },
    )
    async with guarded_client(policy, timeout=5, verify=trust) as client:
        sender = WebSender(client, policy=policy, secrets={"t1": SecretStr(SECRET)})
        assert await sender.send(event) == Sent("r-1", 200)

    [(headers, body)] = https_receiver.seen
    verify = readme_verifier()
    assert verify(SECRET, headers, body)
    assert signature.verify(SECRET, headers, body)
    tampered_body = body.replace(b"84", b"85")
    assert not verify(SECRET, headers, tampered_body)
    assert not signature.verify(SECRET, headers, tampered_body)
    lowered = {k.lower(): v for k, v in headers.items()}
    digest = lowered["x-pipeline-signature"]
    forged = {**lowered, "x-pipeline-signature": digest[:-1] + ("0" if digest[-1] != "0" else "1")}
    assert not verify(SECRET, forged, body)
    assert not signature.verify(SECRET, forged, body)
    stale = {**lowered, "x-pipeline-timestamp": str(int(lowered["x-pipeline-timestamp"]) - 600)}
    assert not verify(SECRET, stale, body)
    assert not verify("another-tenant's-secret", headers, body)

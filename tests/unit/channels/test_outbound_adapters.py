"""Outbound adapters against real local servers: paths, headers, bodies, outcomes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import SecretStr

from pipeline.channels.email.outbound import EmailSender
from pipeline.channels.outbound import PermanentFailure, Retryable, Sent
from pipeline.channels.slack.outbound import SlackSender
from pipeline.channels.web import signature
from pipeline.channels.web.outbound import WebSender
from pipeline.channels.whatsapp.outbound import WhatsAppSender
from pipeline.config.sections import DeliverySettings
from pipeline.dev.kafka import free_port
from pipeline.egress import EgressPolicy, guarded_client
from pipeline.events.model import Event, Metadata
from pipeline.services.delivery.service import http_client
from tests.http_receiver import Answer, Receiver


@pytest.fixture
def serve() -> Iterator[Any]:
    receivers: list[Receiver] = []

    def start(*answers: Answer) -> Receiver:
        receiver = Receiver(list(answers) or [(200, {}, b"{}")])
        receivers.append(receiver)
        return receiver

    yield start
    for receiver in receivers:
        receiver.close()


@pytest.fixture(params=["httpx", "delivery"])
async def client(request: pytest.FixtureRequest) -> Any:
    """A plain httpx client, and the delivery service's (httpx on aiohttp's pool)."""
    if request.param == "httpx":
        made = httpx.AsyncClient(timeout=5)
    else:
        made = http_client(DeliverySettings(timeout_seconds=5, api_allowed_networks=LOOPBACK))
    async with made as c:
        yield c


def response(
    channel: str,
    address: str,
    *,
    thread_id: str | None = None,
    in_reply_to: str | None = None,
    text: str = "Hello there",
) -> Event:
    metadata = Metadata.new("response_ready", "conv-1", tenant_id="t1", producer="agent")
    return Event(
        metadata,
        {
            "reply_to": {"channel": channel, "address": address, "thread_id": thread_id},
            "text": text,
            "in_reply_to": in_reply_to,
            "proactive": False,
            "ingress_at": None,
        },
    )


def ok(body: dict[str, Any], status: int = 200, **headers: str) -> Answer:
    return status, headers, json.dumps(body).encode()


# --------------------------------------------------------------------------- web

# The local receivers listen on 127.0.0.1 over http: the development policy allows it.
LOOPBACK: list[Any] = ["127.0.0.0/8"]
DEV = EgressPolicy.of(True, ["127.0.0.0/8"])
SECRET = "whsec-unit"


@pytest.fixture
async def callbacks() -> Any:
    async with guarded_client(DEV, timeout=5) as c:
        yield c


def web(client: httpx.AsyncClient, **kwargs: Any) -> WebSender:
    return WebSender(client, **{"policy": DEV, "secrets": {"t1": SecretStr(SECRET)}, **kwargs})


async def test_web_posts_signed_json_with_the_idempotency_key(serve: Any, callbacks: Any) -> None:
    receiver = serve(ok({"id": "m-1"}))
    event = response("web", f"{receiver.url}/callbacks/abc", in_reply_to="u-7")
    outcome = await web(callbacks).send(event)
    assert outcome == Sent("m-1", 200)
    [request] = receiver.seen
    assert request.path == "/callbacks/abc"
    assert request.headers["idempotency-key"] == str(event.id)
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "conversation_id": "conv-1",
        "response_id": str(event.id),
        "text": "Hello there",
        "in_reply_to": "u-7",
    }
    assert signature.verify(SECRET, request.headers, request.body)
    assert not signature.verify("another-secret", request.headers, request.body)
    assert not signature.verify(SECRET, request.headers, request.body.replace(b"Hello", b"Bye"))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((500, {}, b"boom"), Retryable("HTTP 500: boom", 500, None)),
        ((503, {"Retry-After": "7"}, b""), Retryable("HTTP 503: Service Unavailable", 503, 7.0)),
        ((429, {"Retry-After": "2"}, b"slow down"), Retryable("HTTP 429: slow down", 429, 2.0)),
        ((400, {}, b"bad"), PermanentFailure("HTTP 400: bad", 400)),
        ((404, {}, b"gone"), PermanentFailure("HTTP 404: gone", 404)),
        ((204, {}, b""), Sent(None, 204)),
    ],
)
async def test_web_outcome_follows_the_status(
    serve: Any, callbacks: Any, answer: Answer, expected: object
) -> None:
    receiver = serve(answer)
    assert await web(callbacks).send(response("web", receiver.url)) == expected


async def test_web_does_not_follow_a_redirect(serve: Any, callbacks: Any) -> None:
    target = serve(ok({"id": "inside"}))
    receiver = serve((302, {"Location": f"{target.url}/internal"}, b""))
    outcome = await web(callbacks).send(response("web", receiver.url))
    assert isinstance(outcome, PermanentFailure)
    assert outcome.http_status == 302
    assert len(receiver.seen) == 1
    assert target.seen == []


async def test_web_stores_no_answer_body_beyond_a_short_printable_reason(
    serve: Any, callbacks: Any
) -> None:
    secret_body = b"root:x:0:0\x1b[31m\x00" + b"A" * 5000
    receiver = serve((400, {}, secret_body), ok({"id": "x\x00\n" + "9" * 1000}))
    failed = await web(callbacks).send(response("web", receiver.url))
    assert isinstance(failed, PermanentFailure)
    assert len(failed.error) <= 120
    assert failed.error.isprintable()
    sent = await web(callbacks).send(response("web", receiver.url))
    assert isinstance(sent, Sent)
    assert sent.provider_message_id is not None
    assert len(sent.provider_message_id) <= 128
    assert sent.provider_message_id.isprintable()


async def test_web_without_a_signing_secret_for_the_tenant_sends_nothing(
    serve: Any, callbacks: Any
) -> None:
    receiver = serve(ok({}))
    sender = web(callbacks, secrets={"another-tenant": SecretStr("s")})
    outcome = await sender.send(response("web", receiver.url))
    assert outcome == PermanentFailure("no callback signing secret for tenant 't1'")
    assert receiver.seen == []
    fallback = web(callbacks, secrets={"*": SecretStr("for-all")})
    assert isinstance(await fallback.send(response("web", receiver.url)), Sent)
    assert signature.verify("for-all", receiver.seen[0].headers, receiver.seen[0].body)


async def test_web_keeps_a_tenant_to_its_allowed_origins(serve: Any, callbacks: Any) -> None:
    receiver = serve(ok({}))
    port = receiver.server.server_address[1]
    elsewhere = web(callbacks, origins={"t1": ["https://hooks.example.com"]})
    refused = await elsewhere.send(response("web", receiver.url))
    assert isinstance(refused, PermanentFailure)
    assert receiver.seen == []
    listed = web(callbacks, origins={"t1": [f"HTTP://127.0.0.1:{port}"]})
    assert isinstance(await listed.send(response("web", f"{receiver.url}/x")), Sent)


async def test_the_delivery_client_takes_its_proxy_from_the_environment_when_told(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With proxy_from_environment, the shared client of the channel APIs (Slack,
    WhatsApp) honours HTTP(S)_PROXY as a plain httpx client does; web callbacks never use
    it (nor any proxy)."""
    proxy = serve(ok({}))
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy.url)
    section = DeliverySettings(
        timeout_seconds=5, proxy_from_environment=True, api_allowed_networks=LOOPBACK
    )
    async with http_client(section) as delivery_client:
        answer = await delivery_client.post("http://api.channel.test/send", json={})
    assert answer.status_code == 200
    [seen] = proxy.seen
    assert seen.path == "http://api.channel.test/send"  # the absolute form a proxy is sent


async def test_web_connection_refused_is_retryable(callbacks: Any) -> None:
    outcome = await web(callbacks).send(response("web", f"http://127.0.0.1:{free_port()}/"))
    assert isinstance(outcome, Retryable)
    # httpcore's ConnectError; aiohttp's ClientConnectorError under the delivery client
    assert outcome.error.startswith(
        ("connection error: ConnectError", "connection error: ClientConnectorError")
    )


async def test_web_timeout_is_retryable(serve: Any) -> None:
    hang = threading.Event()
    receiver = serve(ok({}))
    original = receiver.server.RequestHandlerClass.do_POST  # type: ignore[attr-defined]

    def slow(self: Any) -> None:
        hang.wait(2)
        original(self)

    receiver.server.RequestHandlerClass.do_POST = slow  # type: ignore[attr-defined]
    async with guarded_client(DEV, timeout=0.2) as quick:
        outcome = await web(quick).send(response("web", receiver.url))
    hang.set()
    assert isinstance(outcome, Retryable)
    assert outcome.error.startswith("timeout: ReadTimeout")


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/x", "http:///nohost", "https://example.com:99999/"],
)
async def test_web_refuses_a_callback_that_is_not_http(callbacks: Any, url: str) -> None:
    outcome = await web(callbacks).send(response("web", url))
    assert isinstance(outcome, PermanentFailure)


async def test_web_refuses_http_unless_the_policy_allows_it(serve: Any) -> None:
    receiver = serve(ok({}))
    strict = EgressPolicy.of(False, ["127.0.0.0/8"])
    async with guarded_client(strict, timeout=5) as client:
        outcome = await web(client, policy=strict).send(response("web", receiver.url))
    assert outcome == PermanentFailure("callback URL scheme must be https, not 'http'")
    assert receiver.seen == []


# --------------------------------------------------------------------------- slack


def slack_settings(url: str, **extra: Any) -> DeliverySettings:
    return DeliverySettings(slack_base_url=f"{url}/api", slack_bot_token="xoxb-test", **extra)


async def test_slack_posts_to_chat_post_message_in_the_thread(serve: Any, client: Any) -> None:
    receiver = serve(ok({"ok": True, "ts": "1700000000.000200", "channel": "C1"}))
    event = response("slack", "C1", thread_id="1700000000.000100")
    outcome = await SlackSender(slack_settings(receiver.url), client).send(event)
    assert outcome == Sent("1700000000.000200", 200)
    [request] = receiver.seen
    assert request.path == "/api/chat.postMessage"
    assert request.headers["authorization"] == "Bearer xoxb-test"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "channel": "C1",
        "text": "Hello there",
        "thread_ts": "1700000000.000100",
        # The response id, for finding the message when it is uncertain whether it arrived.
        "metadata": {
            "event_type": "pipeline_response",
            "event_payload": {"response_id": str(event.id)},
        },
    }


async def test_slack_without_thread_sends_no_thread_ts(serve: Any, client: Any) -> None:
    receiver = serve(ok({"ok": True, "ts": "1.2"}))
    await SlackSender(slack_settings(receiver.url), client).send(response("slack", "C9"))
    assert "thread_ts" not in receiver.seen[0].json()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (ok({"ok": False, "error": "ratelimited"}, **{"Retry-After": "3"}),
         Retryable("slack: ratelimited", 200, 3.0)),
        (ok({"ok": False, "error": "channel_not_found"}),
         PermanentFailure("slack: channel_not_found", 200)),
        (ok({"ok": False, "error": "invalid_auth"}), PermanentFailure("slack: invalid_auth", 200)),
        ((429, {"Retry-After": "30"}, b""), Retryable("HTTP 429: Too Many Requests", 429, 30.0)),
        ((502, {}, b"bad gateway"), Retryable("HTTP 502: bad gateway", 502, None)),
    ],
)  # fmt: skip
async def test_slack_ok_false_is_permanent_except_ratelimited(
    serve: Any, client: Any, answer: Answer, expected: object
) -> None:
    receiver = serve(answer)
    outcome = await SlackSender(slack_settings(receiver.url), client).send(response("slack", "C1"))
    assert outcome == expected


def message(response_id: str, ts: str) -> dict[str, Any]:
    metadata = {"event_type": "pipeline_response", "event_payload": {"response_id": response_id}}
    return {"type": "message", "ts": ts, "text": "x", "metadata": metadata}


async def test_slack_finds_a_sent_response_by_its_metadata(serve: Any, client: Any) -> None:
    event = response("slack", "C1")
    receiver = serve(
        ok({"ok": True, "messages": [message("other", "5.1")], "has_more": True,
            "response_metadata": {"next_cursor": "page2"}}),
        ok({"ok": True, "messages": [message(str(event.id), "5.0")], "has_more": False}),
    )  # fmt: skip
    sender = SlackSender(slack_settings(receiver.url), client)
    found = await sender.find_sent(event, 1_700_000_300_000)
    assert found == Sent("5.0", 200)
    first, second = receiver.seen
    assert first.method == "GET"
    assert first.path.startswith("/api/conversations.history?")
    assert first.headers["authorization"] == "Bearer xoxb-test"
    query = parse_qs(urlsplit(first.path).query)
    assert query["channel"] == ["C1"]
    assert query["include_all_metadata"] == ["true"]
    assert float(query["oldest"][0]) == 1_700_000_300 - 120  # the attempt, less a margin
    assert parse_qs(urlsplit(second.path).query)["cursor"] == ["page2"]


async def test_slack_looks_in_the_thread_and_finding_nothing_means_send(
    serve: Any, client: Any
) -> None:
    receiver = serve(ok({"ok": True, "messages": [message("other", "5.1")], "has_more": False}))
    event = response("slack", "C1", thread_id="1700000000.000100")
    sender = SlackSender(slack_settings(receiver.url), client)
    assert await sender.find_sent(event, 1_700_000_300_000) is None
    [request] = receiver.seen
    assert request.path.startswith("/api/conversations.replies?")
    assert parse_qs(urlsplit(request.path).query)["ts"] == ["1700000000.000100"]


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (ok({"ok": False, "error": "ratelimited"}), Retryable),
        ((503, {}, b""), Retryable),
        (ok({"ok": False, "error": "missing_scope"}), PermanentFailure),
    ],
)
async def test_slack_lookup_failures_are_outcomes(
    serve: Any, client: Any, answer: Answer, kind: type
) -> None:
    receiver = serve(answer)
    found = await SlackSender(slack_settings(receiver.url), client).find_sent(
        response("slack", "C1"), 0
    )
    assert isinstance(found, kind), found


async def test_slack_without_a_token_fails_permanently(client: Any) -> None:
    outcome = await SlackSender(DeliverySettings(), client).send(response("slack", "C1"))
    assert isinstance(outcome, PermanentFailure)
    assert "slack_bot_token" in outcome.error


# --------------------------------------------------------------------------- whatsapp


def whatsapp_settings(url: str) -> DeliverySettings:
    return DeliverySettings(
        whatsapp_base_url=f"{url}/v21.0",
        whatsapp_phone_number_id="1065",
        whatsapp_token="EAAG-test",
    )


async def test_whatsapp_posts_a_text_message(serve: Any, client: Any) -> None:
    answer = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "+4915112345678", "wa_id": "4915112345678"}],
        "messages": [{"id": "wamid.HBgL"}],
    }
    receiver = serve(ok(answer))
    event = response("whatsapp", "+4915112345678", in_reply_to="wamid.IN")
    outcome = await WhatsAppSender(whatsapp_settings(receiver.url), client).send(event)
    assert outcome == Sent("wamid.HBgL", 200)
    [request] = receiver.seen
    assert request.path == "/v21.0/1065/messages"
    assert request.headers["authorization"] == "Bearer EAAG-test"
    assert request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+4915112345678",
        "type": "text",
        "text": {"preview_url": False, "body": "Hello there"},
        "context": {"message_id": "wamid.IN"},
    }


async def test_whatsapp_throttling_is_retryable_and_other_errors_are_not(
    serve: Any, client: Any
) -> None:
    throttled = ok({"error": {"code": 130429, "message": "Rate limit hit"}}, status=400)
    invalid = ok({"error": {"code": 131009, "message": "Parameter value is not valid"}}, 400)
    receiver = serve(throttled, invalid)
    sender = WhatsAppSender(whatsapp_settings(receiver.url), client)
    assert isinstance(await sender.send(response("whatsapp", "+1")), Retryable)
    assert isinstance(await sender.send(response("whatsapp", "+1")), PermanentFailure)


# --------------------------------------------------------------------------- email


class Mailbox:
    def __init__(self, code: str = "250 OK") -> None:
        self.code = code
        self.messages: list[tuple[Envelope, Message]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.code.startswith("250"):
            content = envelope.original_content or b""
            self.messages.append((envelope, message_from_bytes(content)))
        return self.code


@pytest.fixture
def smtp() -> Iterator[Any]:
    controllers: list[Controller] = []

    def start(code: str = "250 OK") -> tuple[Mailbox, int]:
        mailbox = Mailbox(code)
        port = free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return mailbox, port

    yield start
    for controller in controllers:
        controller.stop()


async def test_email_replies_in_the_thread_over_smtp(smtp: Any) -> None:
    mailbox, port = smtp()
    settings = DeliverySettings(
        smtp_host="127.0.0.1", smtp_port=port, email_from="Help Desk <help@example.org>"
    )
    event = response(
        "email",
        "ada@example.com",
        thread_id="<root-1@mail.example.com>",
        in_reply_to="<msg-3@mail.example.com>",
        text="Your order shipped.",
    )
    outcome = await EmailSender(settings).send(event)
    assert outcome == Sent(f"<{event.id}@example.org>")
    [(envelope, message)] = mailbox.messages
    assert envelope.mail_from == "help@example.org"
    assert envelope.rcpt_tos == ["ada@example.com"]
    assert message["From"] == "Help Desk <help@example.org>"
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Re: your message"
    assert message["Message-ID"] == f"<{event.id}@example.org>"
    assert message["In-Reply-To"] == "<msg-3@mail.example.com>"
    assert message["References"] == "<root-1@mail.example.com> <msg-3@mail.example.com>"
    assert message.get_payload(decode=True).decode().strip() == "Your order shipped."  # type: ignore[union-attr]


def test_email_subject_is_re_the_original_when_known() -> None:
    sender = EmailSender(DeliverySettings())
    event = response("email", "a@b.c")
    known = Event(event.metadata, {**event.data, "subject": "Order 42"})
    already = Event(event.metadata, {**event.data, "subject": "RE: Order 42"})
    assert sender.subject(known) == "Re: Order 42"
    assert sender.subject(already) == "RE: Order 42"
    assert sender.subject(event) == "Re: your message"


def test_email_threading_headers_are_bracketed_and_deduplicated() -> None:
    sender = EmailSender(DeliverySettings(email_from="bot@example.org"))
    message = sender.message(
        response("email", "a@b.c", thread_id="root@x\r\nBcc: evil@x", in_reply_to="root@x")
    )
    assert message["In-Reply-To"] == "<root@x>"
    assert message["References"] == "<root@xBcc:evil@x> <root@x>"
    assert message["Bcc"] is None
    first = sender.message(response("email", "a@b.c"))
    assert first["In-Reply-To"] is None and first["References"] is None


@pytest.mark.parametrize(
    ("code", "kind"),
    [("451 4.3.0 try later", Retryable), ("554 5.7.1 rejected", PermanentFailure)],
)
async def test_email_smtp_4xx_is_retryable_and_5xx_permanent(
    smtp: Any, code: str, kind: type
) -> None:
    _, port = smtp(code)
    settings = DeliverySettings(smtp_host="127.0.0.1", smtp_port=port)
    outcome = await EmailSender(settings).send(response("email", "ada@example.com"))
    assert isinstance(outcome, kind), outcome


async def test_email_unreachable_server_is_retryable() -> None:
    settings = DeliverySettings(smtp_host="127.0.0.1", smtp_port=free_port(), timeout_seconds=2)
    outcome = await EmailSender(settings).send(response("email", "ada@example.com"))
    assert isinstance(outcome, Retryable)


async def test_email_to_something_that_is_no_address_fails_permanently() -> None:
    outcome = await EmailSender(DeliverySettings()).send(response("email", "not an address"))
    assert isinstance(outcome, PermanentFailure)


def test_slack_and_whatsapp_get_fewer_sends_at_once_than_web_unless_configured() -> None:
    section = DeliverySettings()
    assert section.concurrent_sends("web") == section.max_concurrent_sends == 128
    assert section.concurrent_sends("slack") == section.concurrent_sends("whatsapp") == 32
    tuned = DeliverySettings(max_concurrent_sends=16, channel_concurrent_sends={"web": 256})
    assert tuned.concurrent_sends("web") == 256
    assert tuned.concurrent_sends("slack") == 16

"""Inbound parsers of every channel: verification, parsing, conversation and event ids."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from pipeline.channels.email import inbound as email
from pipeline.channels.inbound import Parsed, bearer_tenant, stable_event_id
from pipeline.channels.slack import inbound as slack
from pipeline.channels.web import inbound as web
from pipeline.channels.webhook import inbound as webhook
from pipeline.channels.whatsapp import inbound as whatsapp
from pipeline.errors import InboundRejected

NOW = 1_700_000_000.0


def sign(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def rejected(status: int, fn: Any, *args: Any) -> str:
    with pytest.raises(InboundRejected) as info:
        fn(*args)
    assert info.value.status == status
    return info.value.reason


def only(parsed: Any) -> Any:
    assert isinstance(parsed, Parsed)
    assert len(parsed.events) == 1, parsed
    return parsed.events[0]


# --- bearer tokens -------------------------------------------------------------------


def test_bearer_token_names_its_tenant() -> None:
    tokens = {"acme": "tok-a", "globex": "tok-g"}
    assert bearer_tenant("Bearer tok-g", tokens) == "globex"
    assert bearer_tenant("bearer  tok-a ", tokens) == "acme"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic tok-a", "Bearer tok-x"])
def test_bearer_token_missing_or_wrong_is_401(header: str | None) -> None:
    assert "token" in rejected(401, bearer_tenant, header, {"acme": "tok-a"})


# --- web -----------------------------------------------------------------------------


def test_web_message_defaults_to_one_conversation_per_user() -> None:
    event = only(
        web.parse(body({"user_id": "u1", "text": "hi", "callback_url": "http://cb/x"}), "acme")
    )
    assert event.conversation_id == "web:acme:u1"
    assert event.tenant_id == "acme"
    assert event.event_id is None
    assert event.data["reply_to"] == {"channel": "web", "address": "http://cb/x", "thread_id": None}
    assert event.data["sender_id"] == "u1"


def test_web_message_keeps_given_conversation_and_derives_id_from_message_id() -> None:
    payload = {
        "conversation_id": "c-9",
        "user_id": "u1",
        "text": "hi",
        "callback_url": "https://cb.example/x",
        "message_id": "m1",
    }
    first = only(web.parse(body(payload), "acme"))
    again = only(web.parse(body(payload), "acme"))
    assert first.conversation_id == "web:acme:c-9"
    assert only(web.parse(body({**payload, "conversation_id": "web:acme:c-9"}), "acme")) == first
    assert first.event_id == again.event_id == stable_event_id("web", "acme", "m1")
    assert only(web.parse(body(payload), "globex")).event_id != first.event_id


@pytest.mark.parametrize(
    "payload",
    [
        {"text": "hi", "callback_url": "http://cb/x"},
        {"user_id": "u1", "text": "", "callback_url": "http://cb/x"},
        {"user_id": "u1", "text": "hi", "callback_url": "ftp://cb/x"},
        {"user_id": "u1", "text": "hi", "callback_url": "http://cb/x", "extra": 1},
        ["not", "an", "object"],
    ],
)
def test_web_message_invalid_is_400_with_reason(payload: Any) -> None:
    assert rejected(400, web.parse, body(payload), "acme")


def test_invalid_json_and_non_utf8_are_400() -> None:
    assert "JSON" in rejected(400, web.parse, b"{nope", "acme")
    assert "JSON" in rejected(400, web.parse, '{"a": "é"}'.encode("utf-16"), "acme")


# --- slack ---------------------------------------------------------------------------

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def slack_message(**event: Any) -> dict[str, Any]:
    inner = {"type": "message", "channel": "C1", "user": "U1", "text": "hello", "ts": "1.000"}
    inner.update(event)
    return {"type": "event_callback", "team_id": "T1", "event_id": "Ev1", "event": inner}


def test_slack_signature_v0_accepted() -> None:
    raw = body(slack_message())
    ts = str(int(NOW))
    signature = "v0=" + sign(SLACK_SECRET, f"v0:{ts}:".encode() + raw)
    slack.verify(SLACK_SECRET, ts, signature, raw, NOW)


def test_slack_wrong_signature_stale_or_missing_timestamp_is_401() -> None:
    raw = body(slack_message())
    ts = str(int(NOW))
    good = "v0=" + sign(SLACK_SECRET, f"v0:{ts}:".encode() + raw)
    assert "signature" in rejected(401, slack.verify, "other", ts, good, raw, NOW)
    assert "signature" in rejected(401, slack.verify, SLACK_SECRET, ts, good, raw + b" ", NOW)
    assert "signature" in rejected(401, slack.verify, SLACK_SECRET, ts, None, raw, NOW)
    stale = str(int(NOW) - 301)
    stale_sig = "v0=" + sign(SLACK_SECRET, f"v0:{stale}:".encode() + raw)
    assert "timestamp" in rejected(401, slack.verify, SLACK_SECRET, stale, stale_sig, raw, NOW)
    future = str(int(NOW) + 301)
    future_sig = "v0=" + sign(SLACK_SECRET, f"v0:{future}:".encode() + raw)
    assert "timestamp" in rejected(401, slack.verify, SLACK_SECRET, future, future_sig, raw, NOW)
    assert rejected(401, slack.verify, SLACK_SECRET, None, good, raw, NOW)
    assert rejected(401, slack.verify, SLACK_SECRET, "soon", good, raw, NOW)


def test_slack_url_verification_returns_the_challenge() -> None:
    parsed = slack.parse(body({"type": "url_verification", "challenge": "abc"}), "t")
    assert parsed == slack.Challenge("abc")


def test_slack_message_thread_is_one_conversation() -> None:
    top = only(slack.parse(body(slack_message(ts="1.000")), "t"))
    reply = only(
        slack.parse(body({**slack_message(ts="2.000", thread_ts="1.000"), "event_id": "Ev2"}), "t")
    )
    assert top.conversation_id == reply.conversation_id == "slack:T1:C1:1.000"
    assert top.data["reply_to"] == {"channel": "slack", "address": "C1", "thread_id": "1.000"}
    assert reply.data["reply_to"]["thread_id"] == "1.000"
    assert top.data["external_id"] == "Ev1"
    assert top.event_id == stable_event_id("slack", "T1", "Ev1")
    assert top.event_id != reply.event_id


def test_slack_direct_message_is_one_conversation_per_dm() -> None:
    event = only(slack.parse(body(slack_message(channel="D1", channel_type="im")), "t"))
    assert event.conversation_id == "slack:T1:D1"
    assert event.data["reply_to"]["thread_id"] is None


@pytest.mark.parametrize(
    "event",
    [
        {"bot_id": "B1"},
        {"subtype": "bot_message"},
        {"subtype": "message_changed"},
        {"type": "reaction_added"},
    ],
)
def test_slack_bot_messages_and_housekeeping_are_ignored(event: dict[str, Any]) -> None:
    parsed = slack.parse(body(slack_message(**event)), "t")
    assert isinstance(parsed, Parsed)
    assert parsed.events == ()
    assert parsed.ignored


def test_slack_malformed_callback_is_400() -> None:
    assert rejected(400, slack.parse, body({"type": "event_callback", "team_id": "T"}), "t")
    no_user = slack_message()
    del no_user["event"]["user"]
    assert rejected(400, slack.parse, body(no_user), "t")


# --- whatsapp ------------------------------------------------------------------------


def wa_payload(*messages: dict[str, Any], statuses: list[Any] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": "PN1"},
        "contacts": [{"profile": {"name": "Kerry"}, "wa_id": "4911"}],
        "messages": list(messages),
    }
    if statuses is not None:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}],
    }


def wa_text(wamid: str, text: str, sender: str = "4911") -> dict[str, Any]:
    return {
        "from": sender,
        "id": wamid,
        "timestamp": "1700000000",
        "type": "text",
        "text": {"body": text},
    }


def test_whatsapp_handshake() -> None:
    assert whatsapp.handshake("subscribe", "vt", "1158201444", "vt") == "1158201444"
    assert rejected(403, whatsapp.handshake, "subscribe", "wrong", "1", "vt")
    assert rejected(403, whatsapp.handshake, "unsubscribe", "vt", "1", "vt")
    assert rejected(403, whatsapp.handshake, None, None, None, "vt")


def test_whatsapp_signature() -> None:
    raw = body(wa_payload(wa_text("wamid.1", "hi")))
    whatsapp.verify("app-secret", "sha256=" + sign("app-secret", raw), raw)
    assert rejected(401, whatsapp.verify, "app-secret", "sha256=" + sign("x", raw), raw)
    assert rejected(401, whatsapp.verify, "app-secret", sign("app-secret", raw), raw)
    assert rejected(401, whatsapp.verify, "app-secret", None, raw)


def test_whatsapp_two_messages_are_two_events() -> None:
    parsed = whatsapp.parse(
        body(wa_payload(wa_text("wamid.1", "one"), wa_text("wamid.2", "two"))), "t"
    )
    assert [e.data["text"] for e in parsed.events] == ["one", "two"]
    first = parsed.events[0]
    assert first.conversation_id == "whatsapp:PN1:4911"
    assert first.data["reply_to"] == {"channel": "whatsapp", "address": "4911", "thread_id": None}
    assert first.data["external_id"] == "wamid.1"
    assert first.data["sender_name"] == "Kerry"
    assert first.event_id == stable_event_id("whatsapp", "wamid.1")


def test_whatsapp_statuses_and_media_produce_nothing() -> None:
    statuses = [{"id": "wamid.out", "status": "delivered", "recipient_id": "4911"}]
    parsed = whatsapp.parse(body(wa_payload(statuses=statuses)), "t")
    assert parsed.events == ()
    assert parsed.ignored == ("1 status update(s)",)
    image = {"from": "4911", "id": "wamid.3", "type": "image", "image": {"id": "MEDIA"}}
    assert whatsapp.parse(body(wa_payload(image)), "t").events == ()


def test_whatsapp_interactive_reply_is_text() -> None:
    reply = {
        "from": "4911",
        "id": "wamid.4",
        "type": "interactive",
        "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}},
    }
    assert only(whatsapp.parse(body(wa_payload(reply)), "t")).data["text"] == "Yes"


def test_whatsapp_malformed_is_400() -> None:
    assert rejected(400, whatsapp.parse, body({"object": "x"}), "t")
    assert rejected(400, whatsapp.parse, body(wa_payload({"id": "wamid.5"})), "t")


# --- email ---------------------------------------------------------------------------


def mail(**fields: Any) -> bytes:
    base = {
        "from": "Ann <ann@example.com>",
        "to": "help@example.com",
        "subject": "Printer",
        "text": "It is broken",
        "message_id": "<m1@example.com>",
        "authentication_results": "mx.example.com; dmarc=pass header.from=example.com",
    }
    return body({**base, **fields})


def test_email_reply_threads_into_the_original_conversation() -> None:
    original = only(email.parse(mail(), "t"))
    reply = only(
        email.parse(
            mail(message_id="<m2@example.com>", in_reply_to="<m1@example.com>", subject="Re: P"),
            "t",
        )
    )
    deeper = only(
        email.parse(
            mail(
                message_id="<m3@example.com>",
                in_reply_to="<m2@example.com>",
                references=["<m1@example.com> <m2@example.com>"],
            ),
            "t",
        )
    )
    assert original.conversation_id == reply.conversation_id == deeper.conversation_id
    assert original.conversation_id.startswith("email:")
    other = only(email.parse(mail(message_id="<other@example.com>"), "t"))
    assert other.conversation_id != original.conversation_id


def test_email_address_attributes_and_ids() -> None:
    event = only(
        email.parse(
            mail(message_id="m2@example.com", in_reply_to="m1@example.com", references=[]), "t"
        )
    )
    assert event.data["sender_id"] == "ann@example.com"
    assert event.data["sender_name"] == "Ann"
    assert event.data["reply_to"] == {
        "channel": "email",
        "address": "ann@example.com",
        "thread_id": "<m1@example.com>",
    }
    assert event.data["external_id"] == "<m2@example.com>"
    assert event.data["attributes"]["subject"] == "Printer"
    assert event.data["attributes"]["message_id"] == "<m2@example.com>"
    assert event.data["attributes"]["references"] == "<m2@example.com>"
    assert event.event_id == stable_event_id("email", "t", "<m2@example.com>")
    threaded = only(email.parse(mail(message_id="<m3@x>", references=["<m1@x>", "<m2@x>"]), "t"))
    assert threaded.data["attributes"]["references"] == "<m1@x> <m2@x> <m3@x>"


@pytest.mark.parametrize(
    "fields",
    [{"from": "nobody"}, {"message_id": "<>"}, {"message_id": ""}, {"text": None}, {"cc": "x"}],
)
def test_email_invalid_is_400(fields: dict[str, Any]) -> None:
    assert rejected(400, email.parse, mail(**fields), "t")


# --- webhooks ------------------------------------------------------------------------


HOOK = webhook.Source("s3cret", ["t"])


def test_webhook_contract() -> None:
    raw = body({"event": "ticket.resolved", "conversation_id": "web:t:u1", "id": "d1", "x": 1})
    headers = webhook.signature_headers("s3cret", raw, NOW)
    assert headers["X-Webhook-Timestamp"] == str(int(NOW))
    stamp = headers["X-Webhook-Timestamp"]
    assert headers["X-Signature-256"] == "sha256=" + sign("s3cret", f"{stamp}.".encode() + raw)
    webhook.verify("s3cret", stamp, headers["X-Signature-256"], raw, NOW + 299)
    event = only(webhook.parse("zendesk", HOOK, raw))
    assert (event.event_type, event.tenant_id) == ("webhook_received", "t")
    assert event.conversation_id == "web:t:u1"
    assert event.data == {
        "source": "zendesk",
        "event_name": "ticket.resolved",
        "payload_json": raw.decode(),
        "external_id": "d1",
    }
    assert event.event_id == stable_event_id("webhook", "zendesk", "d1")


def test_webhook_unknown_source_bad_signature_and_bad_body() -> None:
    assert "unknown" in rejected(404, webhook.source_for, "nope", {"zendesk": HOOK})
    raw = body({"event": "e", "conversation_id": "c", "id": "d1"})
    stamp = str(int(NOW))
    good = webhook.signature_headers("s3cret", raw, NOW)["X-Signature-256"]
    assert rejected(401, webhook.verify, "s3cret", stamp, "sha256=" + sign("other", raw), raw, NOW)
    # The body alone signed (the old scheme) is not the signature of timestamp.body.
    assert rejected(401, webhook.verify, "s3cret", stamp, "sha256=" + sign("s3cret", raw), raw, NOW)
    assert "stamp" in rejected(401, webhook.verify, "s3cret", None, good, raw, NOW)
    assert rejected(400, webhook.parse, "zendesk", HOOK, body({"event": "e", "id": "d"}))
    assert rejected(400, webhook.parse, "zendesk", HOOK, body({"conversation_id": "c", "id": "d"}))
    assert "id" in rejected(
        400, webhook.parse, "zendesk", HOOK, body({"event": "e", "conversation_id": "c"})
    )


@pytest.mark.parametrize("skew", [-301, 301, 10**9])
def test_webhook_stale_or_future_timestamp_is_401_even_when_signed(skew: int) -> None:
    raw = body({"event": "e", "conversation_id": "c", "id": "d1"})
    headers = webhook.signature_headers("s3cret", raw, NOW + skew)
    stamp, signature = headers["X-Webhook-Timestamp"], headers["X-Signature-256"]
    assert "replay" in rejected(401, webhook.verify, "s3cret", stamp, signature, raw, NOW)


@pytest.mark.parametrize("stamp", ["", "-5", "1.5", "9" * 400, "\uff11\uff17\uff10\uff10"])
def test_webhook_timestamp_that_is_not_unix_seconds_is_401(stamp: str) -> None:
    raw = body({"event": "e", "conversation_id": "c", "id": "d1"})
    signature = "sha256=" + sign("s3cret", f"{stamp}.".encode() + raw)
    assert rejected(401, webhook.verify, "s3cret", stamp, signature, raw, NOW)


def test_webhook_tenant_and_prefix_rules() -> None:
    two = webhook.Source("s", ["t1", "t2"], ["web:t1:", "web:t2:", "crm-"])
    call = {"event": "e", "id": "d1"}
    named = only(
        webhook.parse("crm", two, body({**call, "conversation_id": "crm-9", "tenant": "t2"}))
    )
    assert (named.tenant_id, named.conversation_id) == ("t2", "crm-9")
    assert "several tenants" in rejected(
        400, webhook.parse, "crm", two, body({**call, "conversation_id": "crm-9"})
    )
    assert "may not address tenant 't3'" in rejected(
        403, webhook.parse, "crm", two, body({**call, "conversation_id": "crm-9", "tenant": "t3"})
    )
    # A conversation in another tenant's web namespace, even among the allowed prefixes.
    assert "does not belong to tenant 't2'" in rejected(
        403,
        webhook.parse,
        "crm",
        two,
        body({**call, "conversation_id": "web:t1:u", "tenant": "t2"}),
    )
    assert "starting with" in rejected(
        403,
        webhook.parse,
        "crm",
        two,
        body({**call, "conversation_id": "slack:T:C", "tenant": "t1"}),
    )

"""Tenants stay apart, on a real broker: gateway over HTTP, webhooks service and agent.

Tenant t1 tells the assistant a secret; tenant t2 (a valid web token, and a webhook
source allowed for t2 only) tries to reach t1's conversations. t2 gets nothing of t1's:
no answer drawn from t1's history, no change to where t1's answers go, and every attempt
shows, as a 403 from the gateway or as a dead letter with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from pipeline.channels.webhook.inbound import signature_headers
from pipeline.events.model import Event, Metadata
from pipeline.services import webhooks
from pipeline.services.agent import assemble
from pipeline.services.webhooks.rules import RuleSet
from tests.integration.gateway_support import record_count, serving
from tests.integration.runtime_support import (
    Record,
    produce_events,
    read_all_async,
    running,
    settings_for,
)

CRM_SECRET = "crm-secret"
T1_CALLBACK = "https://t1.example/cb"
T2_CALLBACK = "https://t2.example/cb"
SECRET = "my secret word is swordfish"
TOPICS = (
    "message_received",
    "webhook_received",
    "context_updated",
    "tool_called",
    "tool_result",
    "tool_catalog",
    "response_ready",
    "timer_requested",
    "timer_fired",
    "agent_state_changelog",
    "response_delta",
    "history_summarized",
    "webhook_deliveries",
    "dead_letters",
)
RULES = """
rules:
  - source: crm
    event: note
    facts: {note: "{text|}"}
    proactive_message: "A note from the CRM: {text|}"
"""


def web(conversation: str | None, text: str, callback: str) -> dict[str, Any]:
    body = {"user_id": "u", "text": text, "callback_url": callback}
    return body if conversation is None else {**body, "conversation_id": conversation}


def answers(records: list[Record], conversation: str) -> list[Event]:
    return [r.event() for r in records if r.key == conversation]


async def test_tenant_b_gets_nothing_of_tenant_a(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    topics = dict(zip(TOPICS, make_topics(*TOPICS, partitions=2), strict=True))
    settings = settings_for(
        kafka_bootstrap,
        topic_prefix,
        gateway={
            "web_tokens": {"t1": "tok-1", "t2": "tok-2"},
            "email_relays": {
                "mx": {"token": "tok-mx", "tenant": "t1", "authserv_id": "mx.example.com"}
            },
            "webhook_sources": {"crm": {"secret": CRM_SECRET, "tenants": ["t2"]}},
            "publish_timeout_seconds": 10.0,
        },
    )
    agent, state = assemble(settings)
    hooks = webhooks.build(settings, rules=RuleSet.parse(RULES))
    t1 = {"Authorization": "Bearer tok-1"}
    t2 = {"Authorization": "Bearer tok-2"}

    async def crm(http: httpx.AsyncClient, call: dict[str, Any]) -> httpx.Response:
        raw = json.dumps({"event": "note", "text": "hi", **call}).encode()
        headers = signature_headers(CRM_SECRET, raw, time.time())
        return await http.post("/v1/webhooks/crm", content=raw, headers=headers)

    async def responses(done: Callable[[list[Record]], bool]) -> list[Record]:
        return await read_all_async(kafka_bootstrap, topics["response_ready"], done, 60)

    async with serving(settings) as http, running(agent), running(hooks):
        told = await http.post(
            "/v1/web/messages", json=web("chat-1", SECRET, T1_CALLBACK), headers=t1
        )
        assert told.status_code == 202, told.text
        mine = told.json()["events"][0]["conversation_id"]
        assert mine == "web:t1:chat-1"
        await responses(lambda r: len(answers(r, mine)) >= 1)

        # t2 names t1's conversation over the web: refused, nothing produced.
        produced = await asyncio.to_thread(
            record_count, kafka_bootstrap, topics["message_received"]
        )
        taken = await http.post(
            "/v1/web/messages", json=web(mine, "what did I say?", T2_CALLBACK), headers=t2
        )
        assert taken.status_code == 403
        assert "namespace" in taken.json()["error"]
        # The same name from t2 is t2's own conversation, which knows nothing of t1's.
        own = await http.post(
            "/v1/web/messages", json=web("chat-1", "what did I say?", T2_CALLBACK), headers=t2
        )
        assert own.status_code == 202
        theirs = own.json()["events"][0]["conversation_id"]
        assert theirs == "web:t2:chat-1"
        assert (
            await asyncio.to_thread(record_count, kafka_bootstrap, topics["message_received"])
            == produced + 1
        )

        # The webhook source allowed for t2 names t1's web conversation: refused.
        for call in (
            {"id": "w1", "conversation_id": mine},
            {"id": "w2", "conversation_id": mine, "tenant": "t1"},
        ):
            refused = await crm(http, call)
            assert refused.status_code == 403, refused.text
        assert (
            await asyncio.to_thread(record_count, kafka_bootstrap, topics["webhook_received"]) == 0
        )

        # An email conversation of t1: its id names the relay's tenant, so the gateway
        # refuses t2's webhook too; the same event injected past the gateway (a bug, a
        # misconfigured source) is refused by the agent (dead letter, with reason).
        mail = {
            "from": "Ann <ann@example.org>",
            "to": "help@example.com",
            "text": SECRET,
            "message_id": "<ann-1@example.org>",
            "authentication_results": "mx.example.com; dmarc=pass header.from=example.org",
        }
        mailed = await http.post(
            "/v1/email/inbound", json=mail, headers={"Authorization": "Bearer tok-mx"}
        )
        assert mailed.status_code == 202, mailed.text
        thread = mailed.json()["events"][0]["conversation_id"]
        await responses(lambda r: len(answers(r, thread)) >= 1)
        assert thread.startswith("email:t1:")
        slipped = await crm(http, {"id": "w3", "conversation_id": thread})
        assert slipped.status_code == 403, slipped.text
        assert "does not belong to tenant 't2'" in slipped.json()["error"]
        assert (
            await asyncio.to_thread(record_count, kafka_bootstrap, topics["webhook_received"]) == 0
        )
        injected = Event(
            Metadata.new("context_updated", thread, tenant_id="t2", producer="test"),
            {"source": "crm", "facts": {"note": "hi"}, "proactive_message": "A note from the CRM"},
        )
        produce_events(kafka_bootstrap, topics["context_updated"], [injected])

        # A message_received of t2 on t1's conversation that got past the gateway somehow
        # (a bug, a misconfigured channel): the agent refuses it too.
        bypass = Event(
            Metadata.new("message_received", mine, tenant_id="t2", producer="test"),
            {
                "channel": "web",
                "sender_id": "eve",
                "text": "what did I say?",
                "reply_to": {"channel": "web", "address": T2_CALLBACK, "thread_id": None},
                "external_id": None,
            },
        )
        produce_events(kafka_bootstrap, topics["message_received"], [bypass])
        letters = await read_all_async(
            kafka_bootstrap, topics["dead_letters"], lambda r: len(r) >= 2, 60
        )

        # t1 carries on: its history and reply address are intact.
        again = await http.post(
            "/v1/web/messages", json=web("chat-1", "what did I say?", T1_CALLBACK), headers=t1
        )
        assert again.status_code == 202
        records = await responses(
            lambda r: len(answers(r, mine)) >= 2 and len(answers(r, theirs)) >= 1
        )
        stored = {
            conversation: next(
                v for p in state.store.partitions if (v := state.store.lookup(p, conversation))
            )
            for conversation in (mine, thread)
        }

    headers = [{k: (v or b"").decode() for k, v in r.headers} for r in letters]
    reasons = {h["dlt-original-topic"]: h["dlt-exception-message"] for h in headers}
    assert set(reasons) == {topics["context_updated"], topics["message_received"]}
    for reason in reasons.values():
        assert "belongs to tenant 't1'" in reason and "'t2'" in reason
    assert {h["dlt-service"] for h in headers} == {"agent"}

    first, second = answers(records, mine)
    assert second["text"] == f'You said: "{SECRET}"'
    assert {first["reply_to"]["address"], second["reply_to"]["address"]} == {T1_CALLBACK}
    [reply_to_t2] = answers(records, theirs)
    assert SECRET not in reply_to_t2["text"]
    everything = [r.event() for r in records]
    to_t2 = [e for e in everything if e["reply_to"]["address"] == T2_CALLBACK]
    assert to_t2 == [reply_to_t2]
    assert not any("A note from the CRM" in e["text"] for e in everything)
    assert all(SECRET not in e["text"] for e in everything if e.metadata.tenant_id == "t2")
    assert stored[mine]["reply_to"]["address"] == T1_CALLBACK
    assert stored[thread]["reply_to"]["address"] == "ann@example.org"
    for value in stored.values():
        assert value["tenant"] == "t1"
        assert value["facts"] == {}  # the refused webhook's facts were not merged


SLACK_SECRET = "slack-signing-secret"
WA_SECRET = "meta-app-secret"


def slack_request(event_id: str, ts: str, text: str) -> tuple[bytes, dict[str, str]]:
    """A signed Slack message of workspace T1's channel C1, in the thread ``ts``."""
    event = {"type": "message", "channel": "C1", "user": "U1", "text": text, "ts": ts}
    if event_id != "first":
        event["thread_ts"] = "100.1"
    raw = json.dumps(
        {"type": "event_callback", "team_id": "T1", "event_id": event_id, "event": event}
    ).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(SLACK_SECRET.encode(), f"v0:{stamp}:".encode() + raw, hashlib.sha256)
    headers = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": "application/json",
    }
    return raw, headers


def whatsapp_request(wamid: str, text: str) -> tuple[bytes, dict[str, str]]:
    """A signed WhatsApp notification of number PN1 from user 4915."""
    message = {"from": "4915", "id": wamid, "type": "text", "text": {"body": text}}
    value = {"metadata": {"phone_number_id": "PN1"}, "messages": [message]}
    raw = json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"value": value}]}]}
    ).encode()
    digest = hmac.new(WA_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def mail_from_ann(message_id: str, text: str, in_reply_to: str | None = None) -> dict[str, Any]:
    mail = {
        "from": "Ann <ann@example.org>",
        "to": "help@t1.example",
        "text": text,
        "message_id": message_id,
        "authentication_results": "mx.example.com; dmarc=pass header.from=example.org",
    }
    return mail if in_reply_to is None else {**mail, "in_reply_to": in_reply_to}


async def test_a_t2_source_can_take_no_slack_whatsapp_or_email_conversation_of_t1(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    """The takeover of the issue: a source of t2 names t1's Slack, WhatsApp and email
    conversations. The gateway refuses it (403, nothing produced); the same events
    injected past the gateway are dead-lettered by the agent, also for a conversation
    it has not seen yet; t1's users are answered as before, at their own addresses."""
    topics = dict(zip(TOPICS, make_topics(*TOPICS, partitions=2), strict=True))
    settings = settings_for(
        kafka_bootstrap,
        topic_prefix,
        gateway={
            "slack_signing_secret": SLACK_SECRET,
            "slack_teams": {"T1": "t1"},
            "whatsapp_app_secret": WA_SECRET,
            "whatsapp_numbers": {"PN1": "t1"},
            "email_relays": {
                "mx": {"token": "tok-mx", "tenant": "t1", "authserv_id": "mx.example.com"}
            },
            "webhook_sources": {"crm": {"secret": CRM_SECRET, "tenants": ["t2"]}},
            "publish_timeout_seconds": 10.0,
        },
    )
    agent, state = assemble(settings)
    relay = {"Authorization": "Bearer tok-mx"}

    async def responses(done: Callable[[list[Record]], bool]) -> list[Record]:
        return await read_all_async(kafka_bootstrap, topics["response_ready"], done, 60)

    async with serving(settings) as http, running(agent):
        raw, headers = slack_request("first", "100.1", "hello from slack")
        slack = await http.post("/v1/slack/events", content=raw, headers=headers)
        raw, headers = whatsapp_request("wamid.1", "hello from whatsapp")
        whatsapp = await http.post("/v1/whatsapp/webhook", content=raw, headers=headers)
        mail = await http.post(
            "/v1/email/inbound", json=mail_from_ann("<a1@example.org>", "hello"), headers=relay
        )
        for answer in (slack, whatsapp, mail):
            assert answer.status_code in (200, 202), answer.text
        ids = [answer.json()["events"][0]["conversation_id"] for answer in (slack, whatsapp, mail)]
        assert ids[:2] == ["slack:T1:C1:100.1", "whatsapp:PN1:4915"]
        assert ids[2].startswith("email:t1:")
        await responses(lambda r: all(answers(r, c) for c in ids))

        # t2's source names each of them, with or without naming t1: 403, nothing produced.
        for n, conversation in enumerate(ids):
            for call in ({}, {"tenant": "t1"}):
                raw = json.dumps(
                    {"event": "ticket.resolved", "id": f"w{n}{len(call)}",
                     "conversation_id": conversation, **call}
                ).encode()  # fmt: skip
                refused = await http.post(
                    "/v1/webhooks/crm",
                    content=raw,
                    headers=signature_headers(CRM_SECRET, raw, time.time()),
                )
                assert refused.status_code == 403, refused.text
                assert "'t2'" in refused.json()["error"] or "'t1'" in refused.json()["error"]
        assert (
            await asyncio.to_thread(record_count, kafka_bootstrap, topics["webhook_received"]) == 0
        )

        # The same, past the gateway: t2 events on t1's conversations, and on a Slack
        # thread of t1 the agent has not seen (no first event makes t2 its owner).
        evil = {"channel": "web", "address": T2_CALLBACK, "thread_id": None}
        unseen = "slack:T1:C1:200.2"
        injected = [
            Event(
                Metadata.new("message_received", c, tenant_id="t2", producer="test"),
                {
                    "channel": "web",
                    "sender_id": "eve",
                    "text": "mine now",
                    "reply_to": evil,
                    "external_id": None,
                },
            )
            for c in [*ids, unseen]
        ]
        produce_events(kafka_bootstrap, topics["message_received"], injected)
        updates = [
            Event(
                Metadata.new("context_updated", c, tenant_id="t2", producer="test"),
                {"source": "crm", "facts": {"owner": "t2"}, "proactive_message": "t2 here"},
            )
            for c in ids
        ]
        produce_events(kafka_bootstrap, topics["context_updated"], updates)
        letters = await read_all_async(
            kafka_bootstrap, topics["dead_letters"], lambda r: len(r) >= 7, 60
        )

        # Positive control: t1's users go on and are answered where they wrote from.
        raw, headers = slack_request("second", "100.2", "still there?")
        assert (await http.post("/v1/slack/events", content=raw, headers=headers)).is_success
        raw, headers = whatsapp_request("wamid.2", "still there?")
        assert (await http.post("/v1/whatsapp/webhook", content=raw, headers=headers)).is_success
        again = await http.post(
            "/v1/email/inbound",
            json=mail_from_ann("<a2@example.org>", "still there?", "<a1@example.org>"),
            headers=relay,
        )
        assert again.json()["events"][0]["conversation_id"] == ids[2]
        records = await responses(lambda r: all(len(answers(r, c)) >= 2 for c in ids))
        stored = {
            c: next(v for p in state.store.partitions if (v := state.store.lookup(p, c)))
            for c in ids
        }
        unseen_stored = [p for p in state.store.partitions if state.store.lookup(p, unseen)]

    headers = [{k: (v or b"").decode() for k, v in r.headers} for r in letters]
    assert len(headers) == 7
    assert {h["dlt-service"] for h in headers} == {"agent"}
    for h in headers:
        reason = h["dlt-exception-message"]
        assert "belongs to tenant 't1'" in reason and "'t2'" in reason, reason
    assert sum(h["dlt-original-topic"] == topics["context_updated"] for h in headers) == 3
    assert unseen_stored == []

    everything = [r.event() for r in records]
    assert all(e.metadata.tenant_id == "t1" for e in everything)
    assert not any(e["reply_to"]["address"] == T2_CALLBACK for e in everything)
    assert not any("t2 here" in e["text"] for e in everything)
    slack_answers, whatsapp_answers, mail_answers = (answers(records, c) for c in ids)
    assert all(
        "still there?" in c[-1]["text"] for c in (slack_answers, whatsapp_answers, mail_answers)
    )
    assert {e["reply_to"]["address"] for e in slack_answers} == {"C1"}
    assert {e["reply_to"]["address"] for e in whatsapp_answers} == {"4915"}
    assert {e["reply_to"]["address"] for e in mail_answers} == {"ann@example.org"}
    for value in stored.values():
        assert value["tenant"] == "t1"
        assert value["facts"] == {}

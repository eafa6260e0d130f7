"""Whose conversation an id names: web namespaces, channel owners, webhook sources, tenant
names."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.channels.email import inbound as email
from pipeline.channels.slack import inbound as slack
from pipeline.channels.tenancy import (
    ChannelOwners,
    check_addressable,
    web_conversation,
    web_owner,
)
from pipeline.channels.web import inbound as web
from pipeline.channels.webhook import inbound as webhook
from pipeline.channels.whatsapp import inbound as whatsapp
from pipeline.config.sections import GatewaySettings
from pipeline.errors import InboundRejected


def test_a_named_web_conversation_is_put_in_the_tenants_namespace() -> None:
    assert web_conversation("t1", None, "u1") == "web:t1:u1"
    assert web_conversation("t1", "support-42", "u1") == "web:t1:support-42"
    assert web_conversation("t1", "web:t1:support-42", "u1") == "web:t1:support-42"


@pytest.mark.parametrize(
    "named",
    ["web:t1:secret", "web:t10:x", "web:t:x", "slack:T1:C1:1.0", "whatsapp:PN:49", "email:abc"],
)
def test_naming_another_tenants_or_channels_conversation_is_403(named: str) -> None:
    with pytest.raises(InboundRejected) as info:
        web_conversation("t2", named, "u1")
    assert info.value.status == 403
    assert "namespace" in info.value.reason


def test_the_web_parser_refuses_another_tenants_conversation() -> None:
    raw = json.dumps(
        {
            "conversation_id": "web:t1:u1",
            "user_id": "u9",
            "text": "what did I say?",
            "callback_url": "https://evil.example/cb",
        }
    ).encode()
    with pytest.raises(InboundRejected) as info:
        web.parse(raw, "t2")
    assert info.value.status == 403
    assert web.parse(raw, "t1").events[0].conversation_id == "web:t1:u1"


def test_web_owner_reads_the_tenant_of_web_ids_only() -> None:
    assert web_owner("web:t1:a:b") == "t1"
    assert web_owner("web:t1") is None
    assert web_owner("slack:T:C") is None
    assert web_owner("t1") is None


def test_check_addressable_allows_own_tenant_and_prefixes() -> None:
    check_addressable("crm", "t1", "web:t1:u1", ["t1"])
    check_addressable("crm", "t1", "crm-7", ["t1"], ["crm-", "web:t1:"])
    for tenant, conversation, prefixes in (
        ("t2", "web:t2:u1", ()),  # tenant not allowed for the source
        ("t1", "web:t2:u1", ()),  # another tenant's namespace
        ("t1", "web:t1:u1", ("crm-",)),  # outside the prefixes
    ):
        with pytest.raises(InboundRejected) as info:
            check_addressable("crm", tenant, conversation, ["t1"], prefixes)
        assert info.value.status == 403


@pytest.mark.parametrize(
    "gateway",
    [
        {"web_tokens": {"a:b": "tok"}},
        {"slack_tenant": "x:y"},
        {"webhook_sources": {"crm": {"secret": "s", "tenants": ["ok", "not:ok"]}}},
        {"webhook_sources": {"crm": {"secret": "s", "tenants": []}}},
        {"email_relays": {"mx": {"token": "t", "tenant": ""}}},
        {
            "webhook_secrets": {"crm": "s"},
            "webhook_sources": {"crm": {"secret": "s", "tenants": ["a"]}},
        },
        {"email_token": "t", "email_relays": {"default": {"token": "u", "tenant": "a"}}},
    ],
)
def test_settings_refuse_ambiguous_tenants_and_doubly_defined_sources(
    gateway: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        GatewaySettings.model_validate(gateway)


def test_shorthand_settings_define_a_source_and_a_relay() -> None:
    settings = GatewaySettings.model_validate(
        {
            "webhook_secrets": {"zendesk": "zs"},
            "webhook_tenant": "acme",
            "webhook_sources": {"crm": {"secret": "cs", "tenants": ["a", "b"]}},
            "email_token": "mail",
            "email_tenant": "acme",
            "email_authserv_id": "mx.acme.example",
        }
    )
    sources = settings.sources()
    assert sources["zendesk"].tenants == ["acme"]
    assert sources["zendesk"].secret.get_secret_value() == "zs"
    assert sources["crm"].tenants == ["a", "b"]
    relay = settings.relays()["default"]
    assert (relay.tenant, relay.require_authentication) == ("acme", True)


OWNERS = ChannelOwners(
    slack_tenant="t9",
    slack_teams={"T1": "t1", "T2": "t2"},
    whatsapp_tenant="t9",
    whatsapp_numbers={"PN1": "t1"},
)


@pytest.mark.parametrize(
    ("conversation", "owner"),
    [
        ("web:t1:a:b", "t1"),
        ("email:t1:0123abcd", "t1"),
        ("slack:T1:C1:1.0", "t1"),
        ("slack:T2:D1", "t2"),
        ("slack:T7:C1:1.0", "t9"),  # a workspace not listed: slack_tenant's
        ("whatsapp:PN1:4915", "t1"),
        ("whatsapp:PN2:4915", "t9"),
        ("crm-7", None),  # an id of no channel
        ("web:t1", None),
        ("email:0123abcd", None),  # a malformed (or old, tenantless) email id
        ("slack::C1", None),
    ],
)
def test_the_owner_of_a_conversation_comes_from_its_id_and_the_channels_settings(
    conversation: str, owner: str | None
) -> None:
    assert OWNERS.owner(conversation) == owner


def test_owners_are_read_from_the_gateway_settings() -> None:
    settings = GatewaySettings.model_validate(
        {"slack_teams": {"T1": "t1"}, "whatsapp_numbers": {"PN1": "t2"}, "slack_tenant": "s"}
    )
    owners = ChannelOwners.from_settings(settings)
    assert (owners.slack("T1"), owners.slack("T5"), owners.whatsapp("PN1")) == ("t1", "s", "t2")
    assert owners.whatsapp("PN5") == "default"


@pytest.mark.parametrize(
    "conversation", ["slack:T1:C1:1.0", "whatsapp:PN1:4915", "email:t1:0123abcd", "web:t1:x"]
)
def test_a_source_of_t2_may_not_address_a_channels_conversation_of_t1(conversation: str) -> None:
    with pytest.raises(InboundRejected) as info:
        check_addressable("crm", "t2", conversation, ["t2"], (), OWNERS)
    assert info.value.status == 403
    assert f"{conversation!r} does not belong to tenant 't2'" in info.value.reason
    check_addressable("crm", "t1", conversation, ["t1"], (), OWNERS)


def test_a_channels_id_that_names_no_tenant_is_refused_to_a_source() -> None:
    for conversation in ("email:0123abcd", "web:t1", "slack:"):
        with pytest.raises(InboundRejected, match="names no tenant") as info:
            check_addressable("crm", "t1", conversation, ["t1"], (), OWNERS)
        assert info.value.status == 403
    check_addressable("crm", "t1", "crm-7", ["t1"], (), OWNERS)


def test_a_webhook_call_is_checked_against_the_channels_owners() -> None:
    raw = json.dumps({"event": "ticket.resolved", "conversation_id": "slack:T1:C1", "id": "d"})
    with pytest.raises(InboundRejected) as info:
        webhook.parse("crm", webhook.Source("s", ["t2"]), raw.encode(), OWNERS)
    assert info.value.status == 403
    [event] = webhook.parse("crm", webhook.Source("s", ["t1"]), raw.encode(), OWNERS).events
    assert (event.tenant_id, event.conversation_id) == ("t1", "slack:T1:C1")


def test_slack_and_whatsapp_messages_take_the_tenant_of_their_workspace_or_number() -> None:
    def slack_body(team: str) -> bytes:
        inner = {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "1.0"}
        envelope = {"type": "event_callback", "team_id": team, "event_id": "E", "event": inner}
        return json.dumps(envelope).encode()

    for team, tenant in (("T1", "t1"), ("T2", "t2"), ("T3", "t9")):
        parsed = slack.parse(slack_body(team), OWNERS)
        assert isinstance(parsed, slack.Parsed)
        assert parsed.events[0].tenant_id == tenant

    def whatsapp_body(number: str) -> bytes:
        message = {"from": "49", "id": f"w-{number}", "type": "text", "text": {"body": "hi"}}
        value = {"metadata": {"phone_number_id": number}, "messages": [message]}
        notification = {"object": "x", "entry": [{"changes": [{"value": value}]}]}
        return json.dumps(notification).encode()

    assert whatsapp.parse(whatsapp_body("PN1"), OWNERS).events[0].tenant_id == "t1"
    assert whatsapp.parse(whatsapp_body("PN2"), OWNERS).events[0].tenant_id == "t9"


def test_an_email_conversation_is_in_its_relays_tenants_namespace() -> None:
    mail = {
        "from": "ann@example.org",
        "to": "help@example.com",
        "text": "hi",
        "message_id": "<a@example.org>",
    }
    raw = json.dumps(mail).encode()
    [mine] = email.parse(raw, "t1", require_authentication=False).events
    [theirs] = email.parse(raw, "t2", require_authentication=False).events
    assert mine.conversation_id.startswith("email:t1:")
    assert theirs.conversation_id.startswith("email:t2:")
    assert OWNERS.owner(mine.conversation_id) == "t1"


@pytest.mark.parametrize(
    "gateway",
    [
        {"email_token": "t"},
        {"email_relays": {"mx": {"token": "t", "tenant": "a"}}},
    ],
)
def test_a_relay_that_checks_senders_must_name_its_receiving_server(
    gateway: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError) as info:
        GatewaySettings.model_validate(gateway)
    assert "authserv" in str(info.value).lower()
    named = "PIPELINE_GATEWAY__EMAIL_AUTHSERV_ID" if "email_token" in gateway else "'mx'"
    assert named in str(info.value)


def test_a_relay_that_vouches_for_senders_itself_needs_no_receiving_server() -> None:
    relays = {"mx": {"token": "t", "tenant": "a", "require_authentication": False}}
    settings = GatewaySettings.model_validate({"email_relays": relays})
    assert settings.relays()["mx"].authserv_id is None
    short = GatewaySettings.model_validate({"email_token": "t", "email_authserv_id": "mx.a"})
    assert short.relays()["default"].authserv_id == "mx.a"

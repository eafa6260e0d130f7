"""Whose conversation an id names: web namespaces, webhook sources, tenant names."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.channels.tenancy import check_addressable, web_conversation, web_owner
from pipeline.channels.web import inbound as web
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
        }
    )
    sources = settings.sources()
    assert sources["zendesk"].tenants == ["acme"]
    assert sources["zendesk"].secret.get_secret_value() == "zs"
    assert sources["crm"].tenants == ["a", "b"]
    relay = settings.relays()["default"]
    assert (relay.tenant, relay.require_authentication) == ("acme", True)

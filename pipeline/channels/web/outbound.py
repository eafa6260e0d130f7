"""Web chat replies: a signed JSON POST to the conversation's callback URL.

The body is ``{conversation_id, response_id, text, in_reply_to}``; the
``Idempotency-Key`` header is the response event id, so a receiver recognises the repeat
that a crash between sending and recording can cause. The callback URL came from a
client, so it is checked against the egress policy (:mod:`pipeline.egress`) and sent
through a client that connects only to checked addresses; the tenant's allowed origins,
when configured, narrow it further. Every callback is signed with the tenant's secret
(:mod:`pipeline.channels.web.signature`); a tenant without one gets none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import httpx
from pydantic import SecretStr

from pipeline.channels.outbound import (
    IDEMPOTENCY_KEY,
    Outcome,
    PermanentFailure,
    Sent,
    classify_status,
    json_body,
    provider_id,
    transport_failure,
)
from pipeline.channels.web import signature
from pipeline.config.sections import DeliverySettings
from pipeline.egress import EgressPolicy, guarded_client, origin
from pipeline.errors import EgressRefused
from pipeline.events.model import Event

ANY_TENANT = "*"


class WebSender:
    """Sends a response to the callback URL in its ``reply_to.address``.

    ``client`` should be a :func:`pipeline.egress.guarded_client` of the same ``policy``
    (:meth:`from_settings` builds both); the policy's checks before sending refuse what
    needs no lookup, the client's refuse what a name resolves to.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        policy: EgressPolicy,
        secrets: Mapping[str, SecretStr],
        origins: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.client = client
        self.policy = policy
        self.secrets = dict(secrets)
        self.origins = {t: {origin(o) for o in allowed} for t, allowed in (origins or {}).items()}

    @staticmethod
    def policy_of(section: DeliverySettings) -> EgressPolicy:
        return EgressPolicy.of(section.callback_allow_http, section.callback_allowed_networks)

    @classmethod
    def from_settings(cls, section: DeliverySettings, client: httpx.AsyncClient) -> WebSender:
        """The sender of a delivery section, over ``client`` (see :func:`callback_client`)."""
        return cls(
            client,
            policy=cls.policy_of(section),
            secrets=section.callback_signing_secrets,
            origins=section.callback_origins,
        )

    async def send(self, response: Event) -> Outcome:
        url = str(response["reply_to"]["address"])
        tenant = response.metadata.tenant_id
        refusal = self.policy.check_url(url)
        if refusal is not None:
            return PermanentFailure(refusal)
        allowed = self.origins.get(tenant)
        if allowed is not None and origin(url) not in allowed:
            return PermanentFailure(f"callback origin is not one tenant {tenant!r} may use")
        secret = self.secrets.get(tenant) or self.secrets.get(ANY_TENANT)
        if secret is None:
            return PermanentFailure(f"no callback signing secret for tenant {tenant!r}")
        body = json.dumps(
            {
                "conversation_id": response.conversation_id,
                "response_id": str(response.id),
                "text": response["text"],
                "in_reply_to": response.get("in_reply_to"),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_KEY: str(response.id),
            **signature.sign(secret.get_secret_value(), body),
        }
        try:
            answer = await self.client.post(url, content=body, headers=headers)
        except EgressRefused as exc:
            return PermanentFailure(str(exc))
        except httpx.HTTPError as exc:
            return transport_failure(exc)
        failure = classify_status(answer)
        if failure is not None:
            return failure
        data = json_body(answer) or {}
        return Sent(provider_id(data.get("id") or data.get("message_id")), answer.status_code)


def callback_client(section: DeliverySettings) -> httpx.AsyncClient:
    """The HTTP client for callback URLs: the section's egress policy, enforced. It keeps
    as many connections alive as the channel may use at once, so under load a callback
    reuses one instead of opening its own."""
    connections = section.concurrent_sends("web")
    return guarded_client(
        WebSender.policy_of(section),
        timeout=section.timeout_seconds,
        headers={"User-Agent": "pipeline-delivery"},
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )

"""The gateway's settings: tokens, channels, webhook sources, e-mail relays, limits."""

from __future__ import annotations

from limits import parse_many
from pydantic import Field, SecretStr, field_validator, model_validator

from pipeline.config.sections._base import Tenant, _Section

# A shorter chat-token secret is guessable: HMAC keys want at least 128 bits.
MIN_CHAT_TOKEN_SECRET_CHARS = 16


class WebhookSource(_Section):
    """A system allowed to POST /v1/webhooks/<source>: its secret and whom it may address."""

    secret: SecretStr = Field(description="HMAC-SHA256 key of the source's signatures.")
    tenants: list[Tenant] = Field(
        min_length=1, description="Tenants whose conversations the source may address."
    )
    conversation_prefixes: list[str] = Field(
        default_factory=list,
        description="If set, the conversation ids the source may name start with one of these.",
    )


class EmailRelay(_Section):
    """A mail relay allowed to POST /v1/email/inbound, identified by its bearer token."""

    token: SecretStr = Field(description="The relay's bearer token (its shared secret).")
    tenant: Tenant = Field(description="Tenant of the conversations of mail from this relay.")
    require_authentication: bool = Field(
        True,
        description="Accept only mail whose authentication results (DMARC pass, or DKIM/SPF "
        "pass aligned with the From domain) the relay reports; false trusts the relay's "
        "secret alone (a relay that enforces DMARC itself).",
    )
    authserv_id: str | None = Field(
        None,
        description="Count only Authentication-Results headers of this authserv-id (the "
        "relay's own receiving server), not ones the sender may have written into the "
        "message; required while require_authentication is true.",
    )


class GatewaySettings(_Section):
    host: str = Field("0.0.0.0", description="Address the gateway listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Gateway HTTP port.")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="Largest accepted body.")
    web_tokens: dict[Tenant, SecretStr] = Field(
        default_factory=dict, description="Web chat bearer token per tenant (tenant -> token)."
    )
    slack_signing_secret: SecretStr | None = Field(None, description="Slack signing secret.")
    slack_tenant: Tenant = Field(
        "default", description="Tenant of the Slack workspaces not listed in slack_teams."
    )
    slack_teams: dict[str, Tenant] = Field(
        default_factory=dict,
        description="Tenant of each Slack workspace (team id -> tenant). The agent reads "
        "it too, to refuse events of any other tenant: give it the same value.",
    )
    whatsapp_app_secret: SecretStr | None = Field(
        None, description="Meta app secret (X-Hub-Signature-256)."
    )
    whatsapp_verify_token: SecretStr | None = Field(
        None, description="Token for the WhatsApp webhook verification handshake."
    )
    whatsapp_tenant: Tenant = Field(
        "default", description="Tenant of the WhatsApp numbers not listed in whatsapp_numbers."
    )
    whatsapp_numbers: dict[str, Tenant] = Field(
        default_factory=dict,
        description="Tenant of each WhatsApp business number (phone number id -> tenant). "
        "The agent reads it too: give it the same value.",
    )
    email_relays: dict[str, EmailRelay] = Field(
        default_factory=dict, description="Mail relays by name: token, tenant, sender checks."
    )
    email_token: SecretStr | None = Field(
        None, description="Shorthand: the token of a relay 'default' for email_tenant."
    )
    email_tenant: Tenant = Field("default", description="Tenant of the email_token relay.")
    email_authserv_id: str | None = Field(
        None, description="authserv_id of the email_token relay (its receiving server)."
    )
    webhook_sources: dict[str, WebhookSource] = Field(
        default_factory=dict, description="Webhook sources by name: secret, tenants, prefixes."
    )
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Shorthand: HMAC secret per webhook source allowed for webhook_tenant only.",
    )
    webhook_tenant: Tenant = Field("default", description="Tenant of webhook_secrets sources.")
    webhook_tolerance_seconds: int = Field(
        300, ge=1, le=3600, description="Largest age (and skew) of a webhook's timestamp."
    )
    publish_timeout_seconds: float = Field(
        5.0, gt=0, description="How long to wait for Kafka before answering 503."
    )
    max_text_chars: int = Field(
        32_768, ge=1, description="Longest message text accepted, in characters (else 413)."
    )
    max_messages_per_request: int = Field(
        50, ge=1, description="Most messages one request may carry, e.g. a WhatsApp batch."
    )
    max_attachments: int = Field(10, ge=0, description="Most attachments on one message.")
    max_id_chars: int = Field(
        2048,
        ge=64,
        description="Longest conversation id, sender id, message id or reply address.",
    )
    public_docs: bool = Field(
        False,
        description="Also serve /docs, /redoc and /openapi.json on the public port "
        "(always served on the metrics port).",
    )
    chat_token_secret: SecretStr | None = Field(
        None,
        description="Key signing browser chat tokens (POST /v1/web/chat-tokens); without it "
        "chat tokens are not issued and the chat page cannot be used.",
    )
    chat_token_ttl_seconds: int = Field(
        3600, ge=60, le=7 * 86400, description="Longest lifetime of a chat token."
    )
    stream_heartbeat_seconds: float = Field(
        15.0, gt=0, le=300, description="Interval of the comment lines that keep a stream open."
    )
    stream_max_per_conversation: int = Field(
        4, ge=1, description="Open streams one conversation may hold on a replica (else 429)."
    )
    stream_max_per_tenant: int = Field(
        1000, ge=1, description="Open streams one tenant may hold on a replica (else 429)."
    )
    stream_max_per_client: int = Field(
        100,
        ge=1,
        description="Open streams one client address may hold on a replica (else 429); "
        "behind a proxy, name it in PIPELINE_HTTP__TRUSTED_PROXIES so that the client is "
        "the address it forwards, not the proxy.",
    )
    rate_limits: dict[str, str] = Field(
        default_factory=dict,
        description="Request rate per tenant at each replica (tenant -> limits such as "
        "'20/second;600/minute'; '*' for tenants not listed); past it a request is "
        "answered 429 with Retry-After. Unset: no limit.",
    )
    chat_history_max_records: int = Field(
        5_000,
        ge=1,
        description="The chat page's history is looked for in this many of the newest "
        "records of the conversation's partition of message_received and of web_outgoing.",
    )
    stream_status_seconds: float = Field(
        2.0,
        gt=0,
        description="How often an open stream checks whether Kafka answers, to tell the "
        "page (a 'status' event) when it stops or starts again.",
    )
    stream_catchup_max_records: int = Field(
        10_000,
        ge=1,
        description="Most records of its partition a reconnect reads to catch up; beyond "
        "it the stream says it skipped some (an SSE 'gap' event).",
    )

    @field_validator("chat_token_secret")
    @classmethod
    def _a_long_enough_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_CHAT_TOKEN_SECRET_CHARS:
            raise ValueError(
                f"a chat token secret needs at least {MIN_CHAT_TOKEN_SECRET_CHARS} characters "
                "(make one with `openssl rand -hex 32`)"
            )
        return value

    @field_validator("rate_limits")
    @classmethod
    def _rates_in_limits_notation(cls, rates: dict[str, str]) -> dict[str, str]:
        for tenant, text in rates.items():
            try:
                parse_many(text)
            except ValueError:
                raise ValueError(
                    f"rate of {tenant!r} is not in the notation '<count>/<second|minute|"
                    "hour|day>' (several separated by ';')"
                ) from None
        return rates

    @model_validator(mode="after")
    def _one_name_one_source(self) -> GatewaySettings:
        both = sorted(self.webhook_sources.keys() & self.webhook_secrets.keys())
        if both:
            raise ValueError(f"webhook source(s) {both} are in webhook_sources and webhook_secrets")
        if self.email_token is not None and "default" in self.email_relays:
            raise ValueError("email_token defines the relay 'default'; email_relays has one too")
        for name, relay in self.relays().items():
            if relay.require_authentication and relay.authserv_id is None:
                where = (
                    "PIPELINE_GATEWAY__EMAIL_AUTHSERV_ID"
                    if self.email_token is not None and name == "default"
                    else f"authserv_id of PIPELINE_GATEWAY__EMAIL_RELAYS[{name!r}]"
                )
                raise ValueError(
                    f"mail relay {name!r} checks senders but names no receiving server: set "
                    f"{where} to the authserv-id its Authentication-Results carry (or "
                    "require_authentication to false for a relay that enforces DMARC itself)"
                )
        return self

    def sources(self) -> dict[str, WebhookSource]:
        """Every webhook source, the webhook_secrets shorthand included."""
        short = {
            name: WebhookSource(secret=secret, tenants=[self.webhook_tenant])
            for name, secret in self.webhook_secrets.items()
        }
        return {**short, **self.webhook_sources}

    def relays(self) -> dict[str, EmailRelay]:
        """Every mail relay, the email_token shorthand (relay 'default') included."""
        relays = dict(self.email_relays)
        if self.email_token is not None:
            relays["default"] = EmailRelay(
                token=self.email_token,
                tenant=self.email_tenant,
                authserv_id=self.email_authserv_id,
            )
        return relays

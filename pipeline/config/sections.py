"""Settings sections of the services, one model each (``PIPELINE_<SECTION>__<FIELD>``).

Each model is a plain pydantic model nested in :class:`pipeline.config.Settings`; a
service reads only its own section. Secrets are ``SecretStr`` and never printed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GatewaySettings(_Section):
    host: str = Field("0.0.0.0", description="Address the gateway listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Gateway HTTP port.")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="Largest accepted body.")
    web_tokens: dict[str, SecretStr] = Field(
        default_factory=dict, description="Web chat bearer token per tenant (tenant -> token)."
    )
    slack_signing_secret: SecretStr | None = Field(None, description="Slack signing secret.")
    slack_tenant: str = Field("default", description="Tenant of Slack conversations.")
    whatsapp_app_secret: SecretStr | None = Field(
        None, description="Meta app secret (X-Hub-Signature-256)."
    )
    whatsapp_verify_token: SecretStr | None = Field(
        None, description="Token for the WhatsApp webhook verification handshake."
    )
    whatsapp_tenant: str = Field("default", description="Tenant of WhatsApp conversations.")
    email_token: SecretStr | None = Field(None, description="Bearer token of the email relay.")
    email_tenant: str = Field("default", description="Tenant of email conversations.")
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="HMAC secret per webhook source."
    )
    webhook_tenant: str = Field("default", description="Tenant of webhook events.")
    publish_timeout_seconds: float = Field(
        5.0, gt=0, description="How long to wait for Kafka before answering 503."
    )


class DeliverySettings(_Section):
    slack_base_url: str = Field("https://slack.com/api", description="Slack Web API base URL.")
    slack_bot_token: SecretStr | None = Field(None, description="Slack bot token.")
    whatsapp_base_url: str = Field(
        "https://graph.facebook.com/v21.0", description="WhatsApp Cloud API base URL."
    )
    whatsapp_phone_number_id: str | None = Field(None, description="Sending phone number id.")
    whatsapp_token: SecretStr | None = Field(None, description="WhatsApp access token.")
    smtp_host: str = Field("127.0.0.1", description="SMTP server for email replies.")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    email_from: str = Field("assistant@example.com", description="From address of replies.")
    timeout_seconds: float = Field(10.0, gt=0, description="Per-request timeout.")
    max_concurrent_sends: int = Field(
        32,
        ge=1,
        description="Sends in progress at once per channel; more wait their turn. The HTTP "
        "client keeps this many connections per channel alive.",
    )
    max_attempts: int = Field(5, ge=1, description="Attempts before a send has failed.")
    backoff_initial_seconds: float = Field(0.5, gt=0)
    backoff_max_seconds: float = Field(30.0, gt=0)
    retry_after_max_seconds: float = Field(
        120.0, gt=0, description="Longest Retry-After honoured; a longer one waits this long."
    )
    email_subject: str = Field(
        "Re: your message", description="Subject of e-mail replies whose subject is unknown."
    )
    sent_topic: str = Field(
        "delivery_sent",
        description="Compacted topic recording sent responses (co-partitioned with "
        "response_ready), restored on assignment so a repeat is not sent again.",
    )
    sent_ids_per_conversation: int = Field(
        64, ge=1, description="Sent response ids remembered per conversation."
    )
    restore_timeout_seconds: float = Field(
        60.0, gt=0, description="Deadline to restore the sent store on assignment."
    )


class LLMSettings(_Section):
    provider: str = Field("deterministic", description="'deterministic' or 'openai'.")
    base_url: str = Field("https://api.openai.com/v1", description="Chat-completions base URL.")
    model: str = Field("gpt-4o-mini", description="Model name.")
    api_key: SecretStr | None = Field(None, description="API key (Bearer).")
    timeout_seconds: float = Field(30.0, gt=0)
    max_retries: int = Field(2, ge=0)
    temperature: float = Field(0.2, ge=0, le=2)
    backoff_initial_seconds: float = Field(
        0.5, gt=0, description="First retry delay after a 429, 5xx or timeout (doubles)."
    )
    backoff_max_seconds: float = Field(8.0, gt=0, description="Longest delay between retries.")
    system_prompt: str = Field(
        "You are a helpful assistant. Use the tools when they help; answer briefly.",
        description="System message sent before the conversation.",
    )


class AgentSettings(_Section):
    history_window: int = Field(20, ge=1, description="Messages of history kept per conversation.")
    max_tool_depth: int = Field(4, ge=0, description="Tool calls allowed per turn.")
    follow_up_seconds: float | None = Field(
        None, gt=0, description="Schedule a follow-up this long after an answer (off if unset)."
    )
    follow_up_text: str = Field(
        "Is there anything else I can help you with?", description="Text of the follow-up."
    )
    tool_timeout_seconds: float = Field(
        10.0, gt=0, description="Deadline given to each tool call (timeout_ms of tool_called)."
    )
    max_open_turns: int = Field(
        4, ge=1, description="Turns waiting on tools per conversation; the oldest is dropped."
    )
    changelog_topic: str = Field(
        "agent_state_changelog", description="Compacted topic backing the conversation state."
    )
    restore_timeout_seconds: float = Field(
        300.0, gt=0, description="Deadline to restore assigned state from the changelog."
    )


class ToolsSettings(_Section):
    timeout_seconds: float = Field(10.0, gt=0, description="Default per-call timeout.")
    max_concurrency: int = Field(16, ge=1, description="Tool calls running at once.")
    knowledge_file: Path | None = Field(None, description="YAML/JSON knowledge base for lookup.")
    enabled: list[str] | None = Field(None, description="Tools to offer (default: all).")
    max_timeout_seconds: float = Field(
        60.0, gt=0, description="Upper bound on the timeout a tool call may ask for."
    )
    load_entry_points: bool = Field(
        True, description="Load user tools from the 'pipeline.tools' entry-point group."
    )


class SchedulerSettings(_Section):
    tick_seconds: float = Field(0.2, gt=0, description="How often due timers are checked.")
    restore_timeout_seconds: float = Field(
        60.0, gt=0, description="Deadline to read the timers topic on assignment."
    )


class WebhooksSettings(_Section):
    rules_file: Path | None = Field(None, description="YAML rules mapping webhooks to events.")

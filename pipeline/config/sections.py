"""Settings sections of the services, one model each (``PIPELINE_<SECTION>__<FIELD>``).

Each model is a plain pydantic model nested in :class:`pipeline.config.Settings`; a
service reads only its own section. Secrets are ``SecretStr`` and never printed.
"""

from __future__ import annotations

import functools
import re
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

from limits import parse_many
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

# What `pipeline console hash-password` prints: scrypt$<n>$<r>$<p>$<salt>$<hash> (base64).
# What `pipeline console hash-password` prints (argon2id), or the scrypt form of earlier
# versions, which is still verified.
_PASSWORD_HASH = re.compile(
    r"\$argon2id\$v=[0-9]+\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}"
    r"|scrypt\$[1-9][0-9]*\$[1-9][0-9]*\$[1-9][0-9]*\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}"
)
# A shorter chat-token secret is guessable: HMAC keys want at least 128 bits.
MIN_CHAT_TOKEN_SECRET_CHARS = 16


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


Tenant = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
"""A tenant name: no ':' so that ``web:<tenant>:<name>`` says unambiguously whose it is."""


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


class HttpServerSettings(_Section):
    """What the HTTP servers (gateway, console) allow a connection before they shed it."""

    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A connection that has not sent a request's whole headers this long "
        "after it opened (or after its last request's answer) is answered 408 and closed.",
    )
    keep_alive_seconds: int = Field(
        5, ge=1, le=300, description="An idle kept-alive connection is closed after this long."
    )
    max_connections: int = Field(
        2048,
        ge=1,
        description="Open connections a process serves; a request on any connection past "
        "them is answered 503 with Retry-After and its connection closed. Open streams "
        "count: keep it above stream_max_per_tenant.",
    )
    parser: Literal["auto", "httptools", "h11"] = Field(
        "auto",
        description="The HTTP/1.1 parser: httptools (llhttp, in C) or h11 (pure Python); "
        "auto is httptools when installed. Both are held to the same limits.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses (or networks, or '*') of proxies whose X-Forwarded-For names "
        "the client, as uvicorn's forwarded_allow_ips; default: 127.0.0.1 only. Limits per "
        "client count the client so named.",
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
    smtp_port: int = Field(25, ge=1, le=65535, description="Port of the SMTP server.")
    smtp_username: str | None = Field(None, description="SMTP login user (no login if unset).")
    smtp_password: SecretStr | None = Field(None, description="SMTP login password (secret).")
    smtp_starttls: bool = Field(
        False, description="Upgrade the SMTP connection with STARTTLS before sending."
    )
    email_from: str = Field("assistant@example.com", description="From address of replies.")
    timeout_seconds: float = Field(10.0, gt=0, description="Per-request timeout.")
    max_concurrent_sends: int = Field(
        128,
        ge=1,
        description="Sends in progress at once per channel; more wait their turn. A send "
        "holds its place while its attempt record is acknowledged and its request answered. "
        "The HTTP client keeps this many connections per channel alive.",
    )
    channel_concurrent_sends: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: {"slack": 32, "whatsapp": 32},
        description="max_concurrent_sends for particular channels (channel -> sends): the "
        "providers' APIs rate-limit a workspace or number, so they get fewer at once than "
        "the web callbacks and the stream.",
    )

    def concurrent_sends(self, channel: str) -> int:
        """Sends in progress at once on ``channel``."""
        return self.channel_concurrent_sends.get(channel, self.max_concurrent_sends)

    max_attempts: int = Field(5, ge=1, description="Attempts before a send has failed.")
    backoff_initial_seconds: float = Field(
        0.5,
        gt=0,
        description="Wait before a refused send's first retry (429, 5xx, timeout); doubles "
        "with jitter, and a longer Retry-After is honoured.",
    )
    backoff_max_seconds: float = Field(
        30.0, gt=0, description="Longest backoff between two attempts of a send."
    )
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
    slack_preview_interval_seconds: float | None = Field(
        None,
        gt=0,
        description="Show Slack answers while they are written: the first words posted, the "
        "message then updated at most once per this many seconds (Slack rate-limits "
        "chat.update), the answer last; also add 'slack' to agent.stream_channels. Off "
        "if unset: Slack gets the answer only.",
    )
    whatsapp_guarantee: Literal["at_least_once", "at_most_once"] = Field(
        "at_least_once",
        description="A WhatsApp send that may or may not have arrived (the service stopped "
        "or the request got no answer): 'at_least_once' sends it again (it may arrive "
        "twice), 'at_most_once' does not (it may be missing; its delivery_status says "
        "'unconfirmed').",
    )
    email_guarantee: Literal["at_least_once", "at_most_once"] = Field(
        "at_least_once",
        description="The same choice for e-mail (a repeat carries the same Message-ID).",
    )
    callback_signing_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Secret signing web callbacks, per tenant (tenant -> secret; '*' for "
        "tenants not listed). A tenant without one gets no callbacks.",
    )
    callback_origins: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Origins a tenant's web callbacks may go to (tenant -> "
        "['https://host[:port]']); a tenant not listed may use any public origin.",
    )
    callback_allow_http: bool = Field(
        False, description="Development only: allow http:// callback URLs (default https only)."
    )
    callback_allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Development only: internal networks callbacks may reach (e.g. "
        "['127.0.0.0/8']); by default loopback, private, link-local and other internal "
        "addresses are refused.",
    )
    api_allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Internal networks the Slack and WhatsApp base URLs may be at (a "
        "stand-in inside the cluster, e.g. ['10.20.0.0/16']); by default they must be public "
        "addresses, as for callbacks.",
    )
    smtp_allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ip_network("127.0.0.0/8"), ip_network("::1/128")],
        description="Internal networks the SMTP server may be at; by default this machine "
        "(a local relay, the default smtp_host), every other internal address refused.",
    )
    proxy_from_environment: bool = Field(
        False,
        description="Send Slack and WhatsApp requests through the proxy of HTTP(S)_PROXY / "
        "NO_PROXY (the proxy's address is then what is checked: list its network in "
        "api_allowed_networks); by default the environment's proxy is ignored.",
    )


class ModelPrice(_Section):
    """What a model's tokens cost, per million, in the currency of the bill."""

    prompt: float = Field(ge=0, description="Price of a million prompt (input) tokens.")
    completion: float = Field(ge=0, description="Price of a million completion (output) tokens.")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What that many tokens cost."""
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1e6


class LLMSettings(_Section):
    provider: str = Field(
        "deterministic",
        description="'deterministic', 'openai', or 'recorded' (replays only: the answers the "
        "model gave when the conversation was recorded).",
    )
    base_url: str = Field("https://api.openai.com/v1", description="Chat-completions base URL.")
    allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Internal networks base_url may be at (a model served inside the "
        "cluster, e.g. ['10.20.0.0/16']); by default it must be a public address, and only "
        "its origin is ever requested.",
    )
    model: str = Field("gpt-4o-mini", description="Model name.")
    api_key: SecretStr | None = Field(None, description="API key (Bearer).")
    timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Timeout of one chat-completion request: for its answer, and for a "
        "free connection while max_connections calls are in progress.",
    )
    connect_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Timeout of opening a connection to the model (a host that does not "
        "answer fails the attempt, which is retried, instead of holding it timeout_seconds).",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Model calls in progress at once per process, each on a connection of its "
        "own that is kept alive for the next; a model that thinks for 1 s with two calls per "
        "turn needs two per turn per second (600 at 300 turns/s).",
    )
    max_retries: int = Field(
        2,
        ge=0,
        description="Retries of a chat completion on 429, 5xx, timeouts and lost "
        "connections; when they run out the agent answers the user with an apology.",
    )
    temperature: float = Field(
        0.2, ge=0, le=2, description="Sampling temperature sent to the model."
    )
    backoff_initial_seconds: float = Field(
        0.5, gt=0, description="First retry delay after a 429, 5xx or timeout (doubles)."
    )
    backoff_max_seconds: float = Field(8.0, gt=0, description="Longest delay between retries.")
    system_prompt: str = Field(
        "You are a helpful assistant. Use the tools when they help; answer briefly.",
        description="System message sent before the conversation.",
    )
    stream: bool = Field(
        True,
        description='Ask an OpenAI-compatible model to stream its answer ("stream": true), '
        "so the agent can show it while it is written (agent.stream_channels); the "
        "turn's answer is the same either way.",
    )
    deterministic_words_per_second: float | None = Field(
        None,
        gt=0,
        description="Let the deterministic provider stream its answers word by word at "
        "this rate (a stand-in for a model that writes; off if unset).",
    )
    context_tokens: int = Field(
        128_000,
        ge=256,
        description="The model's context window in tokens: the request (system prompt, "
        "tools, history, the turn) and the answer must fit in it.",
    )
    answer_reserve_tokens: int = Field(
        4_096,
        ge=0,
        description="Tokens of the context kept free for the model's answer.",
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="What each model's tokens cost, per million, by model name (model -> "
        '{"prompt": 0.15, "completion": 0.6}): `pipeline evaluate` reports each '
        "conversation's cost with them.",
    )


DEFAULT_HANDOFF_PHRASES = (
    "talk to a human",
    "speak to a human",
    "talk to a person",
    "speak to a person",
    "real person",
    "human agent",
    "talk to an agent",
    "speak to an agent",
)


class AgentSettings(_Section):
    version: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The agent's version label: every event the agent emits carries it "
        "(agent_version), and so do its human-cleanup metrics, so timelines, the console, "
        "evaluations and the dashboard tell versions apart (a canary). Default: the "
        "package's version.",
    )
    history_window: int = Field(
        200,
        ge=1,
        description="Messages of history kept whole per conversation; older ones are folded "
        "into the conversation's summary (the model's context budget, llm.context_tokens, "
        "usually folds them first).",
    )
    summary_max_tokens: int = Field(
        1_000,
        ge=50,
        description="Size of a conversation's summary of its folded messages, in tokens; "
        "beyond it the oldest lines of the summary give way.",
    )
    tool_result_max_tokens: int = Field(
        4_000,
        ge=50,
        description="A tool result larger than this is cut to it, with a note saying so, "
        "before the model reads it.",
    )
    stream_channels: list[str] = Field(
        default_factory=lambda: ["web"],
        description="Channels whose answers are previewed while the model writes them "
        "(response_delta events), when the provider streams: 'web' (the chat page's "
        "stream) and 'slack' (with delivery.slack_preview_interval_seconds); [] for none.",
    )
    delta_interval_seconds: float = Field(
        0.1,
        ge=0,
        description="Least time between two deltas of an answer being written (the first "
        "goes at once); the text written meanwhile goes in one delta.",
    )
    delta_max_chars: int = Field(
        400,
        ge=1,
        description="A delta goes before delta_interval_seconds have passed once this many "
        "characters wait.",
    )
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
    journal_topic: str = Field(
        "agent_journal",
        description="Compacted topic of the agent's journal of model calls: a completion "
        "recorded there is reused when its event is handled again (after a crash, a "
        "rebalance or an aborted transaction) instead of asking the model again.",
    )
    journal_model_calls: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Record model calls in the journal: 'auto' for every provider but the "
        "deterministic one (whose answers cost nothing and are the same every time).",
    )
    restore_timeout_seconds: float = Field(
        300.0, gt=0, description="Deadline to restore assigned state from the changelog."
    )
    handoff_phrases: dict[str, list[str]] = Field(
        default_factory=lambda: {"*": list(DEFAULT_HANDOFF_PHRASES)},
        description="Phrases by which a user asks for a person, per tenant (tenant -> "
        "phrases; '*' for tenants not listed; [] for none); matched case-insensitively "
        "anywhere in the message.",
    )
    handoff_text: str | None = Field(
        "I am passing you to a person; they will answer you here.",
        description="Sent to the user when a handoff starts (none if unset).",
    )
    escalate_tool: bool = Field(
        True, description="Offer the model an 'escalate' tool that hands the conversation over."
    )
    handoff_fact: str = Field(
        "handoff",
        description="A context_updated fact of this name (a webhook rule's) hands the "
        "conversation over, its value the reason; it is not merged into the facts.",
    )
    handoff_after_failed_turns: int | None = Field(
        3,
        ge=1,
        description="Hand over after this many failed turns in a row (model down, tool "
        "loop too deep); off if unset.",
    )
    approval_tools: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Tools that need an operator's approval before they run, per tenant "
        "(tenant -> tool names; '*' for every tenant).",
    )
    approval_timeout_seconds: float = Field(
        900.0, gt=0, description="An approval not decided this long after it was asked expires."
    )
    approval_waiting_text: str | None = Field(
        "This needs a person's approval first; I will come back to you here.",
        description="Sent to the user when a tool call waits for approval (none if unset).",
    )
    cleanup_window_seconds: float = Field(
        600.0,
        gt=0,
        description="An answer counts as resolved when, this long after it, the conversation "
        "was not handed to a person, no operator replied and the user did not ask the same "
        "again (the first-answer-resolved rate of the human-cleanup metrics).",
    )

    def version_label(self) -> str:
        """:attr:`version`, or the package's version when it is unset."""
        return self.version or package_version()


@functools.cache
def package_version() -> str:
    """The installed package's version (``0+unknown`` when it is not installed)."""
    try:
        return distribution_version("kafka-agent-pipeline")
    except PackageNotFoundError:
        return "0+unknown"


ToolGuarantee = Literal["idempotent", "keyed", "at_most_once"]
"""What running a tool again for one logical call does (see :mod:`pipeline.toolbox.guarantee`)."""

_GUARANTEE_CHOICES = "'idempotent', 'keyed' or 'at_most_once'"


class McpServerSettings(_Section):
    """One MCP tool server: a stdio ``command`` (with ``args``, ``env``, ``cwd``) or a
    streamable-HTTP ``url`` (with ``headers``)."""

    command: str | None = Field(
        None,
        description="Executable of a stdio server; 'python' (or 'python3') is the "
        "interpreter running the tools service, so a server module installed beside it "
        "is found.",
    )
    args: list[str] = Field(default_factory=list, description="Arguments of the command.")
    env: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra environment of the command (secrets)."
    )
    cwd: Path | None = Field(None, description="Working directory of the command.")
    url: str | None = Field(None, description="Endpoint of a streamable-HTTP server.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="HTTP headers sent to the URL (secrets)."
    )
    allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Internal networks the URL may be at (a server inside the cluster, e.g. "
        "['10.20.0.0/16']); by default it must be a public address, and redirects are "
        "followed only within its origin.",
    )
    prefix: str = Field("", description="Put before each of the server's tool names (e.g. 'crm_').")
    guarantees: dict[str, ToolGuarantee] = Field(
        default_factory=dict,
        description="Guarantee of the server's tools by the server's name for them (without "
        f"the prefix): {_GUARANTEE_CHOICES}; overrides the tool's annotations (readOnlyHint "
        "or idempotentHint true: 'idempotent'; otherwise 'keyed').",
    )

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs either 'command' (stdio) or 'url' (HTTP)")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"MCP server url {self.url!r} must start with http:// or https://")
        return self


class HttpToolSettings(_Section):
    """A tool that calls an HTTP endpoint: the arguments go as a JSON body with an
    ``Idempotency-Key`` header, the JSON answer is the result."""

    url: str = Field(description="Endpoint the call is sent to (https unless http_allow_http).")
    description: str = Field(description="What the tool does, as the model reads it.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments object.",
    )
    method: Literal["POST", "PUT", "PATCH"] = Field("POST", description="HTTP method.")
    guarantee: ToolGuarantee = Field(
        "keyed", description=f"What a repeat of one call does: {_GUARANTEE_CHOICES}."
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="HTTP headers sent with every call (secrets)."
    )


class ToolsSettings(_Section):
    timeout_seconds: float = Field(10.0, gt=0, description="Default per-call timeout.")
    journal_topic: str = Field(
        "tools_journal",
        description="Compacted topic of the tools service's journal of calls: each keyed or "
        "at-most-once call recorded before it runs and after, so a call handled again is "
        "answered from the record (an at-most-once one whose outcome is unknown is not run "
        "again).",
    )
    journal_keep: int = Field(
        64,
        ge=1,
        description="Calls the journal keeps per conversation (the newest), however long ago "
        "they ran: a tool_called that arrives again later is still recognised.",
    )
    max_concurrency: int = Field(16, ge=1, description="Tool calls running at once.")
    knowledge_file: Path | None = Field(None, description="YAML/JSON knowledge base for lookup.")
    enabled: list[str] | None = Field(
        None, description="Tools this tools service serves and advertises (default: all)."
    )
    max_timeout_seconds: float = Field(
        60.0, gt=0, description="Upper bound on the timeout a tool call may ask for."
    )
    plugins: list[str] | Literal["all"] = Field(
        default_factory=list,
        description="Entry points of the 'pipeline.tools' group to load, by name, or "
        '"all" (default: none).',
    )
    mcp_servers: dict[str, McpServerSettings] = Field(
        default_factory=dict, description="MCP tool servers by name, connected at start."
    )
    http_tools: dict[str, HttpToolSettings] = Field(
        default_factory=dict,
        description="Tools that call an HTTP endpoint, by tool name, sent through the egress "
        "policy (public https addresses only, unless loosened below).",
    )
    http_allow_http: bool = Field(
        False, description="Development only: allow http:// URLs for HTTP tools."
    )
    http_allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Internal networks HTTP tools may reach (e.g. ['10.20.0.0/16'] for a "
        "service inside the cluster); by default loopback, private, link-local and other "
        "internal addresses are refused.",
    )
    mcp_connect_timeout_seconds: float = Field(
        10.0, gt=0, description="Deadline to connect to an MCP server and list its tools."
    )
    mcp_retry_initial_seconds: float = Field(
        0.5, gt=0, description="First wait before reconnecting to an MCP server (doubles)."
    )
    mcp_retry_max_seconds: float = Field(
        30.0, gt=0, description="Longest wait between reconnection attempts."
    )
    mcp_ping_interval_seconds: float = Field(
        2.0, gt=0, description="How often a connected MCP server is pinged to notice it is gone."
    )
    catalog_topic: str = Field(
        "tool_catalog", description="Compacted topic the tools services advertise tools on."
    )
    catalog_refresh_seconds: float = Field(
        1.0, gt=0, description="How often the catalog topic is read for changes."
    )
    catalog_wait_seconds: float = Field(
        10.0,
        ge=0,
        description="Agent: how long after start a turn waits for a first advertised tool.",
    )
    tenant_tools: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Agent: tools offered per tenant (tenant -> tool names); an unlisted "
        "tenant is offered every advertised tool.",
    )


class SchedulerSettings(_Section):
    tick_seconds: float = Field(0.2, gt=0, description="How often due timers are checked.")
    restore_timeout_seconds: float = Field(
        60.0, gt=0, description="Deadline to read the timers topic on assignment."
    )


class WebhooksSettings(_Section):
    rules_file: Path | None = Field(None, description="YAML rules mapping webhooks to events.")
    deliveries_topic: str = Field(
        "webhook_deliveries",
        description="Compacted topic recording handled webhook deliveries per conversation "
        "(co-partitioned with webhook_received), restored on assignment, so a replayed or "
        "retried delivery is handled once across processes and restarts.",
    )
    delivery_ids_per_conversation: int = Field(
        1000, ge=1, description="Handled webhook delivery ids remembered per conversation."
    )
    restore_timeout_seconds: float = Field(
        60.0, gt=0, description="Deadline to restore the deliveries store on assignment."
    )


class SchemaRegistrySettings(_Section):
    """The schema registry of the ``confluent`` wire format (Confluent REST API)."""

    url: str | None = Field(
        None, description="Base URL of the registry (http://host:8081); required for confluent."
    )
    username: str | None = Field(None, description="HTTP basic auth user (API key).")
    password: SecretStr | None = Field(None, description="HTTP basic auth password (secret).")
    timeout_seconds: float = Field(5.0, gt=0, description="Timeout of one registry request.")
    unreachable_backoff_seconds: float = Field(
        10.0,
        ge=0,
        description="After the registry failed to answer, records with a schema id not yet "
        "cached are dead-lettered at once for this long instead of waiting again.",
    )


OperatorRole = Literal["viewer", "agent", "admin"]
"""What an operator may do: ``viewer`` reads; ``agent`` also takes, replies, releases and
decides approvals and uncertain tool calls; ``admin`` also redrives dead letters."""

ALL_TENANTS = "*"


class ConsoleOperator(_Section):
    """One operator of the console: a password hash (``pipeline console hash-password``)
    for the sign-in page and/or a bearer token for API use, the tenants whose
    conversations the operator sees and the role that says what the operator may do."""

    password_hash: SecretStr | None = Field(
        None,
        description="argon2id hash as hash-password prints ($argon2id$...); scrypt$... "
        "hashes of earlier versions are still verified.",
    )
    token: SecretStr | None = Field(
        None, description="Bearer token for API use (Authorization: Bearer <token>)."
    )
    tenants: list[Tenant | Literal["*"]] = Field(
        default_factory=lambda: [ALL_TENANTS],
        min_length=1,
        description="Tenants whose conversations, approvals, uncertain actions and dead "
        "letters the operator sees and acts on; ['*'] (the default, which operators "
        "configured before tenants existed get) for every tenant.",
    )
    role: OperatorRole = Field(
        "admin",
        description="'viewer' (reads), 'agent' (also takes, replies, releases, decides "
        "approvals and uncertain actions) or 'admin' (also redrives dead letters); "
        "'admin' by default, what operators configured before roles existed could do.",
    )

    @field_validator("password_hash")
    @classmethod
    def _a_password_hash(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _PASSWORD_HASH.fullmatch(value.get_secret_value()):
            raise ValueError(
                "password_hash is not a hash of `pipeline console hash-password` "
                "($argon2id$v=...$m=...,t=...,p=...$<salt>$<hash>, or an earlier "
                "scrypt$...); in a shell, put it in single quotes: in double quotes each $ "
                "is expanded and the hash is mangled"
            )
        return value

    @model_validator(mode="after")
    def _some_credential(self) -> ConsoleOperator:
        if self.password_hash is None and self.token is None:
            raise ValueError("an operator needs a password_hash or a token")
        if ALL_TENANTS in self.tenants and len(self.tenants) > 1:
            raise ValueError("an operator's tenants are ['*'] or a list of tenants, not both")
        return self

    @property
    def unscoped(self) -> bool:
        """Configured without tenants and role: every tenant, admin (as before they existed)."""
        return not ({"tenants", "role"} & self.model_fields_set)


OperatorId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]


class ConsoleSettings(_Section):
    host: str = Field("0.0.0.0", description="Address the operator console listens on.")
    port: int = Field(8090, ge=0, le=65535, description="Operator console HTTP port.")
    operators: dict[OperatorId, ConsoleOperator] = Field(
        default_factory=dict,
        description="Operators by id: password_hash and/or token (secrets).",
    )
    operators_file: Path | None = Field(
        None,
        description="A JSON file of more operators in the same shape (a mounted secret); "
        "read at start.",
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Key signing the session cookies; the same on every replica (a random "
        "one per process if unset: sessions then end with the process).",
    )
    session_max_age_seconds: int = Field(
        8 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="A session ends this long after sign-in (at most 7 days, as long as the "
        "sessions topic keeps a sign-out).",
    )
    sessions_topic: str = Field(
        "console_sessions",
        description="Compacted topic of ended sessions (sign-outs), read by every console "
        "replica, so a signed-out cookie is refused everywhere.",
    )
    signin_rate_per_operator: str = Field(
        "10/minute;60/hour",
        description="Sign-in attempts per operator name at each replica, in the limits "
        "notation; past it the sign-in is answered 429 with Retry-After before any password "
        "is checked.",
    )
    signin_rate_per_address: str = Field(
        "30/minute;300/hour",
        description="Sign-in attempts per client address at each replica (the address "
        "http.trusted_proxies name), the same way.",
    )
    operators_reload_seconds: float = Field(
        5.0,
        gt=0,
        description="How often operators_file is checked for changes: an operator removed "
        "from it is signed out, a changed role or tenant list applies, without a restart.",
    )
    cookie_secure: bool = Field(
        True, description="Mark the session cookie Secure (HTTPS only); false for plain HTTP."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) besides the console's own from which "
        "forms may be posted (a proxy's public address).",
    )
    lookback_hours: float = Field(
        24.0, gt=0, description="At start, read the topics from this long ago."
    )
    max_conversations: int = Field(
        5000, ge=10, description="Conversations kept in the live view; the oldest go first."
    )
    max_messages: int = Field(
        50, ge=1, description="Messages kept per conversation in the live view."
    )
    dead_letters_listed: int = Field(
        100,
        ge=1,
        le=1000,
        description="Dead letters listed on the dead-letters page, newest first.",
    )

    @field_validator("signin_rate_per_operator", "signin_rate_per_address")
    @classmethod
    def _signin_rate_in_limits_notation(cls, text: str) -> str:
        try:
            parse_many(text)
        except ValueError:
            raise ValueError(
                f"sign-in rate {text!r} is not in the notation '<count>/<second|minute|"
                "hour|day>' (several separated by ';')"
            ) from None
        return text

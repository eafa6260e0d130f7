"""The delivery service's settings."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr

from pipeline.config.sections._base import _Section


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

"""The tools service's settings: its tools, MCP servers and HTTP tools, the catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, model_validator

from pipeline.config.sections._base import _Section

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

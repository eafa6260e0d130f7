"""Settings sections of the services, one model each (``PIPELINE_<SECTION>__<FIELD>``).

Each model is a plain pydantic model nested in :class:`pipeline.config.Settings`; a
service reads only its own section. Secrets are ``SecretStr`` and never printed. One
module per service (or group of small ones); every name is importable from here.
"""

from __future__ import annotations

from pipeline.config.sections._base import Tenant
from pipeline.config.sections.agent import (
    DEFAULT_HANDOFF_PHRASES,
    AgentSettings,
    LLMSettings,
    ModelPrice,
    package_version,
)
from pipeline.config.sections.console import (
    ALL_TENANTS,
    ConsoleOperator,
    ConsoleSettings,
    OperatorId,
    OperatorRole,
)
from pipeline.config.sections.delivery import DeliverySettings
from pipeline.config.sections.gateway import (
    MIN_CHAT_TOKEN_SECRET_CHARS,
    EmailRelay,
    GatewaySettings,
    WebhookSource,
)
from pipeline.config.sections.registry import SchemaRegistrySettings
from pipeline.config.sections.scheduler import SchedulerSettings
from pipeline.config.sections.server import HttpServerSettings
from pipeline.config.sections.tools import (
    HttpToolSettings,
    McpServerSettings,
    ToolGuarantee,
    ToolsSettings,
)
from pipeline.config.sections.webhooks import WebhooksSettings

__all__ = [
    "ALL_TENANTS",
    "DEFAULT_HANDOFF_PHRASES",
    "MIN_CHAT_TOKEN_SECRET_CHARS",
    "AgentSettings",
    "ConsoleOperator",
    "ConsoleSettings",
    "DeliverySettings",
    "EmailRelay",
    "GatewaySettings",
    "HttpServerSettings",
    "HttpToolSettings",
    "LLMSettings",
    "McpServerSettings",
    "ModelPrice",
    "OperatorId",
    "OperatorRole",
    "SchedulerSettings",
    "SchemaRegistrySettings",
    "Tenant",
    "ToolGuarantee",
    "ToolsSettings",
    "WebhookSource",
    "WebhooksSettings",
    "package_version",
]

"""Tools that call an HTTP endpoint: the arguments go as a JSON body with the call's
idempotency key in the ``Idempotency-Key`` header, and the endpoint's JSON answer is the
result::

    refund = http_tool(
        "refund",
        "Refund an order.",
        "https://billing.example.com/refunds",
        {"type": "object", "properties": {"order_id": {"type": "string"}}},
    )

The endpoint is reached through the egress policy (:mod:`pipeline.egress`), with the
checks web callbacks get: https only and public addresses only, unless the policy allows
http or lists internal networks (a service inside the cluster). The URL is checked when
the tool is made, and the address of every connection when it is opened. The tools
service's per-call deadline bounds a call as it does any tool's.

``PIPELINE_TOOLS__HTTP_TOOLS`` configures such tools without code (:func:`http_tools`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import httpx

from pipeline.channels.outbound import IDEMPOTENCY_KEY
from pipeline.config.sections import ToolsSettings
from pipeline.egress import EgressPolicy, guarded_client, origin
from pipeline.errors import ConfigError, EgressRefused, ToolError
from pipeline.tool_context import ToolContext
from pipeline.toolbox.guarantee import KEYED, Guarantee
from pipeline.toolbox.registry import Tool

HTTP = "http"
"""The source of the HTTP tools of the settings."""

Method = Literal["POST", "PUT", "PATCH"]
ERROR_TEXT_LIMIT = 500
"""Characters of an error answer's body that the error result quotes."""


def http_tool(
    name: str,
    description: str,
    url: str,
    parameters: Mapping[str, Any],
    *,
    method: Method = "POST",
    headers: Mapping[str, str] | None = None,
    guarantee: Guarantee = KEYED,
    policy: EgressPolicy = EgressPolicy(),  # noqa: B008  (frozen, so one instance is safe)
    timeout: float = 60.0,
    source: str = "code",
) -> Tool:
    """A :class:`Tool` that sends its arguments to ``url`` and answers with the JSON body.

    ``headers`` go with every call (an ``Authorization``, say). A status that is not 2xx,
    a body that is not JSON, a refused address or a failed connection is a ToolError.
    A URL the ``policy`` refuses is a ConfigError now.
    """
    refusal = policy.check_url(url)
    if refusal is not None:
        raise ConfigError(f"the URL of HTTP tool {name!r} is refused: {refusal}")
    fixed = {"Content-Type": "application/json", "User-Agent": "pipeline-tools", **(headers or {})}
    where = origin(url)

    async def call(arguments: Mapping[str, Any], context: ToolContext) -> Any:
        body = json.dumps(dict(arguments), separators=(",", ":"), ensure_ascii=False).encode()
        sent = {**fixed, IDEMPOTENCY_KEY: context.idempotency_key}
        async with guarded_client(policy, timeout=timeout) as client:
            try:
                answer = await client.request(method, url, content=body, headers=sent)
            except EgressRefused as exc:
                raise ToolError(f"{name}: {exc}") from None
            except httpx.HTTPError as exc:
                raise ToolError(
                    f"{name}: the request to {where} failed ({type(exc).__name__}: {exc})"
                ) from None
        return _result(name, where, answer)

    return Tool(name, description, call, parameters, source=source, guarantee=guarantee)


def http_tools(settings: ToolsSettings) -> list[Tool]:
    """The HTTP tools of ``settings.http_tools``, under the policy of its ``http_allow_http``
    and ``http_allowed_networks``; their source is ``http``."""
    policy = EgressPolicy.of(settings.http_allow_http, settings.http_allowed_networks)
    return [
        http_tool(
            name,
            config.description,
            config.url,
            config.parameters,
            method=config.method,
            headers={k: v.get_secret_value() for k, v in config.headers.items()},
            guarantee=config.guarantee,
            policy=policy,
            timeout=settings.max_timeout_seconds,
            source=HTTP,
        )
        for name, config in sorted(settings.http_tools.items())
    ]


def _result(name: str, where: str, answer: httpx.Response) -> Any:
    if not answer.is_success:
        text = answer.text[:ERROR_TEXT_LIMIT].strip()
        said = f": {text}" if text else ""
        raise ToolError(f"{name}: {where} answered {answer.status_code}{said}")
    if not answer.content:
        return None
    try:
        return answer.json()
    except ValueError:
        kind = answer.headers.get("content-type", "no content type")
        raise ToolError(f"{name}: {where} answered with a body that is not JSON ({kind})") from None

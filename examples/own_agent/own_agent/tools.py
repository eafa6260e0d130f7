"""The shop's tool for the model, offered through the ``pipeline.tools`` entry point."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.toolbox import ToolError, tool

ORDERS = {"A-1001": "shipped", "A-1002": "packing"}


@tool(
    "order_status",
    "Where an order of the shop is.",
    {"order_id": {"type": "string"}},
    guarantee="idempotent",  # it only reads: running it again is harmless
)
async def order_status(args: Mapping[str, Any]) -> dict[str, str]:
    status = ORDERS.get(args["order_id"])
    if status is None:
        raise ToolError(f"no order {args['order_id']!r}; order ids look like A-1001")
    return {"order_id": args["order_id"], "status": status}

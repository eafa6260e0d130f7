"""A team's own event type, as a user adds it: a schema folder and a topic folder of its own.

``acme.shop.OrderPlaced`` refers to the bundled ``pipeline.events.Metadata`` and
``pipeline.events.Address``; its topic ``order_placed`` is a conversation topic with the
bundled partition count.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from pipeline.config import bundled_dir
from pipeline.topology import load_topology

EVENT_TYPE = "order_placed"
FULL_NAME = "acme.shop.OrderPlaced"

ORDER_PLACED = {
    "type": "record",
    "name": "OrderPlaced",
    "namespace": "acme.shop",
    "doc": "A customer placed an order in the shop.",
    "fields": [
        {"name": "metadata", "type": "pipeline.events.Metadata", "doc": "Event metadata."},
        {"name": "order_id", "type": "string", "doc": "The shop's order number."},
        {"name": "total_cents", "type": "long", "doc": "Order total in cents."},
        {
            "name": "coupon",
            "type": ["null", "string"],
            "default": None,
            "doc": "Coupon code used, if any.",
        },
        {"name": "ship_to", "type": "pipeline.events.Address", "doc": "Where updates go."},
    ],
}


def co_partition_count() -> int:
    count = load_topology(bundled_dir("topics")).co_partition_count
    assert count is not None
    return count


def write_user_events(root: Path) -> tuple[Path, Path]:
    """``root/schemas`` and ``root/topics`` holding the order_placed type and topic."""
    schemas, topics = root / "schemas", root / "topics"
    schemas.mkdir(parents=True)
    topics.mkdir(parents=True)
    (schemas / f"{FULL_NAME}.avsc").write_text(json.dumps(ORDER_PLACED, indent=2))
    topic = {
        "name": EVENT_TYPE,
        "kind": "conversation",
        "doc": "Orders placed in the shop.",
        "partitions": co_partition_count(),
        "replication_factor": 1,
        "key": "conversation_id",
        "value_schema": FULL_NAME,
        "configs": {"cleanup.policy": "delete"},
    }
    (topics / f"{EVENT_TYPE}.yaml").write_text(yaml.safe_dump(topic))
    return schemas, topics


def order_body() -> dict[str, object]:
    """A valid body of an order_placed event (the fields besides metadata)."""
    return {
        "order_id": "A-1001",
        "total_cents": 4599,
        "coupon": None,
        "ship_to": {"channel": "web", "address": "http://127.0.0.1:1/cb", "thread_id": None},
    }

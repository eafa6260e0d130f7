"""The shop service: thanks the customer for an order, in the customer's conversation.

Run it with ``pipeline run own_agent.shop:service`` (the schema and topic folders named in
``PIPELINE_EXTRA_SCHEMA_DIRS`` / ``PIPELINE_EXTRA_TOPIC_DIRS``).
"""

from __future__ import annotations

from pipeline import Context, Event, Service

service = Service("shop", emits=["response_ready"])


@service.handler("order_placed")
async def thank_for_the_order(event: Event, ctx: Context) -> None:
    total = event["total_cents"] / 100
    ctx.emit(
        "response_ready",
        {
            "reply_to": event["ship_to"],
            "text": f"Thank you for order {event['order_id']} ({total:.2f} EUR). "
            f'Ask "/tool order_status {{"order_id": "{event["order_id"]}"}}" any time.',
            "proactive": True,
        },
    )

"""The gateway app under uvicorn on a free port, and exact record counts of a topic."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from pipeline.config import Settings
from pipeline.dev.kafka import free_port
from pipeline.services.gateway import create_app
from pipeline.services.gateway.server import gateway_settings


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, registry: CollectorRegistry | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app under uvicorn on 127.0.0.1 (lifespan on); a client for it."""
    app = create_app(gateway_settings(settings), registry=registry)
    async with serving_app(app) as http:
        yield http


@contextlib.asynccontextmanager
async def serving_app(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` under uvicorn on a free port of 127.0.0.1 (lifespan on); a client for it."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def record_count(bootstrap: str, topic: str) -> int:
    """Records ever written to ``topic``: the sum of its partitions' high watermarks."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "counter"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()

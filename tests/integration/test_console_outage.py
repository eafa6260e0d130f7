"""The console through a Kafka outage, on a broker of the test's own that it stops and
starts again (never the shared one): every page keeps answering a browser, never with a
5xx, with a banner saying since when Kafka is unreachable and that what it shows is
stale; the live stream tells an open page when Kafka goes and comes back; the dead
letters read before the outage are shown marked stale (a page, never raw JSON); a reply
Kafka does not take shows the conversation again with what the operator typed."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

from pipeline.dev.kafka import DevKafka
from pipeline.events.catalog import DEAD_LETTER
from pipeline.events.model import utc_now
from pipeline.services.console import create_app
from pipeline.services.console.site import Console
from pipeline.topology import admin_client, apply, load_settings_topology
from tests.integration.console_support import (
    BROWSER,
    console_settings,
    listening,
    page_until,
    signed_in,
)
from tests.integration.gateway_support import serving_app
from tests.integration.runtime_support import SERDE, message, produce, produce_events

PAGES = (
    "/",
    "/inbox",
    "/approvals",
    "/uncertain",
    "/cleanup",
    "/dead-letters",
    "/conversations/conv-o",
    "/conversations/conv-o/timeline",
)
BANNER = "Kafka unreachable since"


async def until(what: str, check: Callable[[], object], seconds: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.2)


async def test_the_console_through_a_kafka_outage(
    stoppable_broker: DevKafka, topic_prefix: str
) -> None:
    broker = stoppable_broker
    bootstrap = broker.bootstrap_servers
    settings = console_settings(bootstrap, topic_prefix)
    settings = settings.model_copy(update={"topic_replication_factor": 1})
    apply(admin_client(settings), load_settings_topology(settings), settings)
    produce_events(bootstrap, topic_prefix + "message_received", [message("conv-o", "hello")])
    letter = {
        "source_topic": topic_prefix + "message_received",
        "source_partition": 0,
        "source_offset": 7,
        "source_timestamp": None,
        "key": b"conv-o",
        "value": SERDE.encode(message("conv-o", "failed once")),
        "headers": [],
        "stage": "handler",
        "error_type": "LLMError",
        "error_message": "the model was down",
        "attempts": 4,
        "service": "agent",
        "handler": "on_message",
        "event_type": "message_received",
        "conversation_id": "conv-o",
        "failed_at": utc_now(),
    }
    produce(
        bootstrap,
        topic_prefix + "dead_letters",
        [("conv-o", SERDE.encode_record(DEAD_LETTER, letter))],
    )

    app = create_app(settings)
    console: Console = app.state.console
    console.actions.ack_timeout = 2.0
    async with serving_app(app) as http:
        token = await signed_in(http)
        http.headers["Accept"] = BROWSER
        await page_until(http, "/", lambda text: "conv-o" in text)
        listed = await http.get("/dead-letters")
        assert "LLMError: the model was down" in listed.text and BANNER not in listed.text

        async with listening(http) as heard:
            await until("the stream opened", lambda: heard)
            broker.stop()
            down = ""

            async def banner_shown() -> bool:
                nonlocal down
                down = (await http.get("/inbox")).text
                return BANNER in down

            deadline = asyncio.get_running_loop().time() + 60
            while not await banner_shown():
                assert asyncio.get_running_loop().time() < deadline, down
                await asyncio.sleep(0.5)
            await until("the stream said Kafka is down", lambda: _kafka(heard, down=True))

            for path in PAGES:
                page = await http.get(path)
                assert page.status_code == 200, (path, page.status_code, page.text[-500:])
                assert page.headers["content-type"].startswith("text/html"), path
                assert BANNER in page.text and "(stale)" in page.text, path
            stale = (await http.get("/dead-letters")).text
            assert "LLMError: the model was down" in stale, "the list read before"
            assert re.search(r"the list as read at [0-9: -]+ UTC \(stale\)", stale)
            assert "hello" in (await http.get("/conversations/conv-o")).text

            typed = "Sorry for the wait, looking now."
            reply = await http.post(
                "/conversations/conv-o/reply", data={"text": typed, "csrf_token": token}
            )
            assert reply.status_code == 200, reply.text[-500:]
            assert f"{typed}</textarea>" in reply.text and "not stored, try again" in reply.text

            broker.start()
            await until("the stream said Kafka is back", lambda: _kafka(heard, down=False), 120)
        back = await http.get("/inbox")
        assert back.status_code == 200 and BANNER not in back.text
        assert "LLMError" in (await http.get("/dead-letters")).text


def _kafka(heard: list[tuple[str, str]], *, down: bool) -> bool:
    return any(kind == "kafka" and json.loads(data)["down"] is down for kind, data in heard)

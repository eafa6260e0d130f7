"""Web replies streamed to browsers: two gateway processes, delivery, a real broker.

Two ``pipeline run gateway`` replicas each hold their own clients' streams; delivery
writes web replies without a callback URL to ``web_outgoing`` and marks them sent; a
client that reconnects (to the other replica) with its last event id gets what it missed
and nothing twice; tokens are checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from pipeline.channels.web import chat_token
from pipeline.channels.web.chat_token import ChatScope
from pipeline.channels.web.stream_log import stream_event_id
from pipeline.events.model import Event, Metadata, to_millis
from pipeline.journal.steps import encode_steps
from pipeline.partitioner import partition_for
from pipeline.runtime.headers import event_headers
from pipeline.services.delivery import build as build_delivery
from pipeline.services.delivery.sent_store import ATTEMPTED, SentEntry, step_of
from pipeline.state import encode_value
from tests.integration.runtime_support import (
    SERDE,
    produce,
    produce_events,
    read_all_async,
    running,
    settings_for,
)
from tests.integration.web_stream_support import (
    CHAT_SECRET,
    TENANT_TOKENS,
    Replica,
    gateway_replicas,
    stream,
    token_for,
)

TOPICS = (
    "message_received",
    "webhook_received",
    "response_ready",
    "delivery_status",
    "delivery_sent",
    "web_outgoing",
    "response_delta",
    "dead_letters",
)


@pytest.fixture
def replicas(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
) -> Iterator[list[Replica]]:
    """Two gateway processes on the same topics, ready."""
    make_topics(*TOPICS, partitions=3)
    with gateway_replicas(2, kafka_bootstrap, topic_prefix, tmp_path) as started:
        yield started


def reply(conversation: str, text: str, tenant: str = "t1") -> Event:
    """A web response_ready without a callback URL: for the stream."""
    metadata = Metadata.new("response_ready", conversation, tenant_id=tenant, producer="agent")
    return Event(
        metadata,
        {
            "reply_to": {"channel": "web", "address": "", "thread_id": None},
            "text": text,
            "in_reply_to": None,
            "proactive": False,
            "ingress_at": metadata.occurred_at,
        },
    )


def sent_ids(records: list[Any]) -> set[str]:
    return {
        str(event["response_id"])
        for event in (r.event() for r in records)
        if event["state"] == "sent"
    }


async def test_two_replicas_each_stream_their_own_conversations_and_delivery_marks_them_sent(
    kafka_bootstrap: str, topic_prefix: str, replicas: list[Replica]
) -> None:
    first, second = replicas
    settings = settings_for(kafka_bootstrap, topic_prefix)
    async with first.client() as a, second.client() as b:
        alice, bob = await token_for(a, "t1", "alice"), await token_for(b, "t1", "bob")
        async with (
            stream(a, {"token": alice["token"]}) as alice_stream,
            stream(b, {"token": bob["token"]}) as bob_stream,
            running(build_delivery(settings)),
        ):
            replies = [
                reply(conversation, f"{name} {n}")
                for n in range(3)
                for conversation, name in (
                    (alice["conversation_id"], "alice"),
                    (bob["conversation_id"], "bob"),
                )
            ]
            produce_events(kafka_bootstrap, topic_prefix + "response_ready", replies)
            assert await alice_stream.texts(3) == ["alice 0", "alice 1", "alice 2"]
            assert await bob_stream.texts(3) == ["bob 0", "bob 1", "bob 2"]
            wanted = {str(r.id) for r in replies}
            statuses = await read_all_async(
                kafka_bootstrap,
                topic_prefix + "delivery_status",
                lambda records: sent_ids(records) >= wanted,
                60,
            )
    assert sent_ids(statuses) == wanted
    for got in alice_stream.got + bob_stream.got:
        assert got.event == "message"
        assert got.data["conversation_id"] in (alice["conversation_id"], bob["conversation_id"])
    # Each replica pushed only to its own connections: nothing else arrived meanwhile.
    assert len(alice_stream.got) == 3 and len(bob_stream.got) == 3
    # The stream record is the one delivery reported as sent, written once per response.
    outgoing = await read_all_async(
        kafka_bootstrap, topic_prefix + "web_outgoing", lambda r: len(r) >= 6, 30
    )
    assert sorted(str(r.event().id) for r in outgoing) == sorted(
        str(stream_event_id(r.id)) for r in replies
    )


async def test_a_reconnect_with_the_last_event_id_gets_what_it_missed_once(
    kafka_bootstrap: str, topic_prefix: str, replicas: list[Replica]
) -> None:
    first, second = replicas
    settings = settings_for(kafka_bootstrap, topic_prefix)
    response_ready = topic_prefix + "response_ready"
    async with first.client() as a, second.client() as b, running(build_delivery(settings)):
        alice = await token_for(a, "t1", "alice")
        conversation = alice["conversation_id"]
        async with stream(a, {"token": alice["token"]}) as before:
            produce_events(kafka_bootstrap, response_ready, [reply(conversation, "m0")])
            produce_events(kafka_bootstrap, response_ready, [reply(conversation, "m1")])
            assert await before.texts(2) == ["m0", "m1"]
        last = before.got[-1].id
        # Missed while disconnected: these are only in Kafka now.
        produce_events(
            kafka_bootstrap, response_ready, [reply(conversation, f"m{n}") for n in (2, 3, 4)]
        )
        missed = await read_all_async(
            kafka_bootstrap, topic_prefix + "web_outgoing", lambda r: len(r) >= 5, 60
        )
        assert len(missed) == 5
        # The other replica resumes after the last event id, then goes on live.
        async with stream(b, {"token": alice["token"]}, {"Last-Event-ID": last}) as after:
            assert await after.texts(3) == ["m2", "m3", "m4"]
            produce_events(
                kafka_bootstrap, response_ready, [reply(conversation, f"m{n}") for n in (5, 6)]
            )
            assert await after.texts(2) == ["m5", "m6"]
            with pytest.raises(TimeoutError):
                await after.next(seconds=2.0)  # nothing repeated after the live point
        ids = [got.id for got in after.got]
        assert len(set(ids)) == len(ids) and last not in ids


async def test_tokens_are_checked_and_scoped_to_their_tenant_and_conversation(
    kafka_bootstrap: str, topic_prefix: str, replicas: list[Replica]
) -> None:
    first, _ = replicas
    async with first.client() as a:
        alice = await token_for(a, "t1", "alice")
        expired = chat_token.issue(
            CHAT_SECRET, ChatScope("t1", "alice", "web:t1:alice", int(time.time()) - 1)
        )
        forged = chat_token.issue("not-the-secret", ChatScope("t1", "alice", "web:t1:alice", 2**40))
        t1 = {"Authorization": f"Bearer {TENANT_TOKENS['t1']}"}
        cases: list[tuple[dict[str, str], dict[str, str], int]] = [
            ({}, {}, 401),
            ({"token": "nonsense"}, {}, 401),
            ({"token": expired}, {}, 401),
            ({"token": forged}, {}, 401),
            ({"token": alice["token"], "conversation_id": "web:t1:bob"}, {}, 403),
            ({"conversation_id": "web:t2:carol"}, t1, 403),
            ({"conversation_id": "x"}, {"Authorization": "Bearer wrong"}, 401),
            ({"token": alice["token"], "last_event_id": "banana"}, {}, 400),
        ]
        for params, headers, status in cases:
            answer = await a.get("/v1/web/stream", params=params, headers=headers)
            assert answer.status_code == status, (params, answer.text)
            assert answer.json()["error"]
        # The tenant's token names its own conversation (server to server).
        async with stream(a, {"conversation_id": "alice"}, t1):
            pass
        # Chat tokens are only issued for the bearer's tenant, and only with its token.
        answer = await a.post("/v1/web/chat-tokens", json={"user_id": "u"})
        assert answer.status_code == 401
        answer = await a.post(
            "/v1/web/chat-tokens", json={"user_id": "u", "conversation_id": "web:t2:x"}, headers=t1
        )
        assert answer.status_code == 403
        # A chat page message goes in the token's conversation, to be answered on the stream.
        sent = await a.post(
            "/v1/web/chat/messages",
            json={"text": "what is 12*7?", "message_id": "m-1"},
            headers={"Authorization": f"Bearer {alice['token']}"},
        )
        assert sent.status_code == 202, sent.text
        refused = await a.post(
            "/v1/web/chat/messages",
            json={"text": "hi"},
            headers={"Authorization": f"Bearer {expired}"},
        )
        assert refused.status_code == 401
    (record,) = await read_all_async(
        kafka_bootstrap, topic_prefix + "message_received", lambda r: len(r) >= 1, 30
    )
    event = record.event()
    assert event.conversation_id == "web:t1:alice"
    assert event["reply_to"]["address"] == ""
    assert event["text"] == "what is 12*7?"


async def test_an_interrupted_stream_attempt_found_in_the_topic_is_not_written_again(
    kafka_bootstrap: str, topic_prefix: str, make_topics: Callable[..., list[str]]
) -> None:
    """The crash window: the attempt was recorded and the record written, the answer was
    not recorded. Delivery finds the record and reports it sent without writing again."""
    make_topics(*TOPICS, partitions=3)
    settings = settings_for(kafka_bootstrap, topic_prefix)
    response = reply("web:t1:dora", "written before the crash")
    attempted = SentEntry(
        str(response.id), 1, None, to_millis(response.metadata.occurred_at), ATTEMPTED
    )
    partition = partition_for(response.conversation_id, 3)
    step = step_of(attempted, (topic_prefix + "response_ready", partition, 0))
    value = encode_value(encode_steps([step]))
    produce(kafka_bootstrap, topic_prefix + "delivery_sent", [(response.conversation_id, value)])
    written = Event(
        response.metadata.caused(
            "web_outgoing",
            producer="delivery",
            event_id=stream_event_id(response.id),
            conversation_id=response.conversation_id,
        ),
        {"response_id": str(response.id), "text": response["text"], "in_reply_to": None},
    )
    # As delivery writes it: with the event-id header, which the lookup reads.
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    producer.produce(
        topic_prefix + "web_outgoing",
        SERDE.encode(written),
        written.conversation_id,
        headers=list(event_headers("web_outgoing", str(written.id), "")),
    )
    assert producer.flush(30) == 0
    async with running(build_delivery(settings)):
        produce_events(kafka_bootstrap, topic_prefix + "response_ready", [response])
        statuses = await read_all_async(
            kafka_bootstrap,
            topic_prefix + "delivery_status",
            lambda records: str(response.id) in sent_ids(records),
            60,
        )
    assert str(response.id) in sent_ids(statuses)
    outgoing = await read_all_async(
        kafka_bootstrap, topic_prefix + "web_outgoing", lambda r: len(r) >= 1, 5
    )
    assert len(outgoing) == 1, "found in the topic: not written a second time"
    assert SERDE.decode(outgoing[0].value)["response_id"] == response.id

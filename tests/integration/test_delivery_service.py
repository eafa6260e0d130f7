"""The delivery service on a real broker, sending to real local HTTP and SMTP servers.

Retries and their statuses, no retry on 400 and a dead letter, Retry-After honoured,
every channel adapter end to end, and never twice across a SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from confluent_kafka import Consumer, TopicPartition

from pipeline.channels.web import signature
from pipeline.dev.kafka import free_port
from pipeline.dev.stack.local import development_env
from pipeline.errors import ConfigError
from pipeline.events.model import Event, Metadata
from pipeline.services.delivery import build
from pipeline.services.delivery.sent_store import decode_value
from tests.integration.runtime_support import (
    SERDE,
    SHORT_SESSION,
    Record,
    produce_events,
    read_all,
    read_all_async,
    running,
    start_service,
    stop_service,
)
from tests.integration.runtime_support import settings_for as base_settings

TOPICS = ("response_ready", "delivery_status", "delivery_sent", "dead_letters")
CALLBACK_SECRET = "integration-callback-secret"

Answer = tuple[int, dict[str, str], bytes]
OK: Answer = (200, {}, b'{"id": "ok"}')


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float
    raw: bytes = b""

    @property
    def key(self) -> str:
        return self.headers["idempotency-key"]


@dataclass
class Receiver:
    """A local HTTP server in a thread. ``answer`` picks each reply; ``after`` runs once
    the reply is on the wire. Like a careful receiver, it processes each idempotency key
    once and acknowledges repeats without processing them again."""

    answer: Callable[[Seen, int], Answer] = lambda seen, n: OK
    after: Callable[[Seen, int], None] | None = None
    seen: list[Seen] = field(default_factory=list)
    processed: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self
        lock = threading.Lock()

        class Handle(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                seen = Seen(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(body),
                    time.monotonic(),
                    body,
                )
                with lock:
                    receiver.seen.append(seen)
                    number = len(receiver.seen)
                    status, headers, reply = receiver.answer(seen, number)
                    known = {s.headers.get("idempotency-key") for s in receiver.processed}
                    if 200 <= status < 300 and seen.headers.get("idempotency-key") not in known:
                        receiver.processed.append(seen)
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                self.wfile.flush()
                if receiver.after is not None:
                    receiver.after(seen, number)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.close()


# The receivers here listen on 127.0.0.1 over http: the development callback settings.
DEVELOPMENT = {
    "callback_allow_http": True,
    "callback_allowed_networks": ["127.0.0.0/8"],
    "callback_signing_secrets": {"*": CALLBACK_SECRET},
}


def settings_for(bootstrap: str, prefix: str, **delivery: Any) -> Any:
    section = {
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.2,
        **DEVELOPMENT,
        **delivery,
    }
    return base_settings(bootstrap, prefix, delivery=section)


def response(
    conversation: str,
    channel: str,
    address: str,
    *,
    text: str = "hello",
    thread_id: str | None = None,
    in_reply_to: str | None = None,
) -> Event:
    metadata = Metadata.new("response_ready", conversation, tenant_id="t1", producer="agent")
    return Event(
        metadata,
        {
            "reply_to": {"channel": channel, "address": address, "thread_id": thread_id},
            "text": text,
            "in_reply_to": in_reply_to,
            "proactive": False,
            "ingress_at": metadata.occurred_at,
        },
    )


def statuses_of(records: list[Record], response_id: object) -> list[Event]:
    events = [r.event() for r in records]
    return [e for e in events if str(e["response_id"]) == str(response_id)]


def has_state(response_id: object, state: str, count: int = 1) -> Callable[[list[Record]], bool]:
    def done(records: list[Record]) -> bool:
        found = [s for s in statuses_of(records, response_id) if s["state"] == state]
        return len(found) >= count

    return done


# --------------------------------------------------------------------------- retries


async def test_500_twice_then_200_delivers_once_and_reports_the_retries(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    receivers: Callable[..., Receiver],
) -> None:
    _, status_topic, sent_topic, dead = make_topics(*TOPICS, partitions=3)
    receiver = receivers(answer=lambda seen, n: (500, {}, b"oops") if n <= 2 else OK)
    [event] = produce_events(
        kafka_bootstrap,
        topic_prefix + "response_ready",
        [response("conv-retry", "web", f"{receiver.url}/chat/callback")],
    )
    service = build(settings_for(kafka_bootstrap, topic_prefix))
    async with running(service):
        records = await read_all_async(kafka_bootstrap, status_topic, has_state(event.id, "sent"))

    assert len(receiver.seen) == 3
    assert {s.key for s in receiver.seen} == {str(event.id)}
    assert len(receiver.processed) == 1
    assert receiver.seen[0].body == {
        "conversation_id": "conv-retry",
        "response_id": str(event.id),
        "text": "hello",
        "in_reply_to": None,
    }
    statuses = statuses_of(records, event.id)
    assert [(s["state"], s["attempt"], s["http_status"]) for s in statuses] == [
        ("retrying", 1, 500),
        ("retrying", 2, 500),
        ("sent", 3, 200),
    ]
    assert statuses[0]["error"] == "HTTP 500: oops"
    assert all(s["next_attempt_at"] is not None for s in statuses[:2])
    assert statuses[2]["provider_message_id"] == "ok"
    for status in statuses:
        assert status.metadata.causation_id == event.id
        assert status.metadata.correlation_id == event.metadata.correlation_id
        assert status.conversation_id == "conv-retry"
    # Each attempt before it went out, and each answer as soon as it came.
    stored = read_all(kafka_bootstrap, sent_topic, lambda r: len(r) >= 6, 10)
    assert {r.key for r in stored} == {"conv-retry"}
    assert [(e.state, e.attempt) for r in stored for e in decode_value(r.value)] == [
        ("attempted", 1),
        ("refused", 1),
        ("attempted", 2),
        ("refused", 2),
        ("attempted", 3),
        ("sent", 3),
    ]
    assert read_all(kafka_bootstrap, dead, lambda r: False, 1) == []
    sent = service.registry.get_sample_value(
        "pipeline_deliveries_total", {"service": "delivery", "channel": "web", "state": "sent"}
    )
    retrying = service.registry.get_sample_value(
        "pipeline_deliveries_total",
        {"service": "delivery", "channel": "web", "state": "retrying"},
    )
    assert (sent, retrying) == (1, 2)


async def test_400_is_not_retried_fails_and_is_dead_lettered(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    receivers: Callable[..., Receiver],
) -> None:
    source, status_topic, sent_topic, dead = make_topics(*TOPICS, partitions=3)
    receiver = receivers(answer=lambda seen, n: (400, {}, b'{"error": "unknown session"}'))
    [event] = produce_events(
        kafka_bootstrap, source, [response("conv-400", "web", f"{receiver.url}/cb")]
    )
    service = build(settings_for(kafka_bootstrap, topic_prefix))
    async with running(service):
        letters = await read_all_async(kafka_bootstrap, dead, lambda r: len(r) >= 1, 60)
        records = await read_all_async(
            kafka_bootstrap, status_topic, has_state(event.id, "failed"), 30
        )
        await asyncio.sleep(0.5)  # room for a retry that must not come

    assert len(receiver.seen) == 1
    [status] = statuses_of(records, event.id)
    assert (status["state"], status["attempt"], status["http_status"]) == ("failed", 1, 400)
    assert status["error"] == 'HTTP 400: {"error": "unknown session"}'
    [letter] = [SERDE.decode_record(r.value)[1] for r in letters]
    assert letter["stage"] == "delivery"
    assert letter["error_type"] == "RejectEvent"
    assert "HTTP 400" in letter["error_message"]
    assert letter["attempts"] == 1
    assert letter["source_topic"] == source
    assert SERDE.decode(letter["value"]).id == event.id
    # Recorded as failed, not sent: a redrive sends it afresh.
    stored = read_all(kafka_bootstrap, sent_topic, lambda r: len(r) >= 2, 10)
    states = [(e.state, e.attempt) for r in stored for e in decode_value(r.value)]
    assert states == [("attempted", 1), ("failed", 1)]


async def test_429_waits_at_least_retry_after(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    receivers: Callable[..., Receiver],
) -> None:
    source, status_topic, *_ = make_topics(*TOPICS, partitions=3)
    receiver = receivers(
        answer=lambda seen, n: (429, {"Retry-After": "2"}, b"slow down") if n == 1 else OK
    )
    [event] = produce_events(
        kafka_bootstrap, source, [response("conv-429", "web", f"{receiver.url}/cb")]
    )
    async with running(build(settings_for(kafka_bootstrap, topic_prefix))):
        records = await read_all_async(kafka_bootstrap, status_topic, has_state(event.id, "sent"))

    first, second = receiver.seen
    gap = second.at - first.at
    print(f"\n429 with Retry-After: 2 -> next attempt after {gap:.2f}s")
    assert gap >= 2.0
    retrying, sent = statuses_of(records, event.id)
    assert (retrying["state"], retrying["http_status"]) == ("retrying", 429)
    waited = (retrying["next_attempt_at"] - retrying.metadata.occurred_at).total_seconds()
    assert 1.9 <= waited <= 2.5
    assert (sent["state"], sent["attempt"]) == ("sent", 2)


# --------------------------------------------------------------------------- channels


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Message]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((envelope, message_from_bytes(envelope.original_content or b"")))
        return "250 OK"


async def test_every_channel_is_delivered_through_the_service(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    receivers: Callable[..., Receiver],
) -> None:
    source, status_topic, *_ = make_topics(*TOPICS, partitions=3)

    def api(seen: Seen, n: int) -> Answer:
        if seen.path.startswith("/web/"):
            return OK
        if seen.path.endswith("/chat.postMessage"):
            return 200, {}, b'{"ok": true, "ts": "1700000000.000900"}'
        return 200, {}, b'{"messaging_product": "whatsapp", "messages": [{"id": "wamid.X"}]}'

    receiver = receivers(answer=api)
    mailbox = Mailbox()
    smtp_port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        settings = settings_for(
            kafka_bootstrap,
            topic_prefix,
            slack_base_url=f"{receiver.url}/slack/api",
            slack_bot_token="xoxb-1",
            whatsapp_base_url=f"{receiver.url}/graph/v21.0",
            whatsapp_phone_number_id="555",
            whatsapp_token="wa-token",
            api_allowed_networks=["127.0.0.0/8"],
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            email_from="bot@example.org",
        )
        events = produce_events(
            kafka_bootstrap,
            source,
            [
                response("c-web", "web", f"{receiver.url}/web/cb", text="to web"),
                response("c-slack", "slack", "C42", text="to slack", thread_id="1.5"),
                response("c-wa", "whatsapp", "+491700000", text="to whatsapp"),
                response(
                    "c-mail",
                    "email",
                    "ada@example.com",
                    text="to email",
                    thread_id="<root@x>",
                    in_reply_to="<m2@x>",
                ),
            ],
        )
        wanted = {str(e.id) for e in events}

        def all_sent(records: list[Record]) -> bool:
            done = {str(r.event()["response_id"]) for r in records if r.event()["state"] == "sent"}
            return wanted <= done

        async with running(build(settings)):
            records = await read_all_async(kafka_bootstrap, status_topic, all_sent, 60)
    finally:
        controller.stop()

    by_path = {s.path: s for s in receiver.seen}
    assert set(by_path) == {"/web/cb", "/slack/api/chat.postMessage", "/graph/v21.0/555/messages"}
    web = by_path["/web/cb"]
    assert signature.verify(CALLBACK_SECRET, web.headers, web.raw)
    assert not signature.verify("not-the-secret", web.headers, web.raw)
    slack = by_path["/slack/api/chat.postMessage"]
    assert slack.headers["authorization"] == "Bearer xoxb-1"
    slack_event = events[1]
    assert slack.body == {
        "channel": "C42",
        "text": "to slack",
        "thread_ts": "1.5",
        "metadata": {
            "event_type": "pipeline_response",
            "event_payload": {"response_id": str(slack_event.id)},
        },
    }
    whatsapp = by_path["/graph/v21.0/555/messages"]
    assert whatsapp.headers["authorization"] == "Bearer wa-token"
    assert whatsapp.body["to"] == "+491700000"
    assert whatsapp.body["text"]["body"] == "to whatsapp"
    [(envelope, mail)] = mailbox.messages
    assert envelope.rcpt_tos == ["ada@example.com"]
    assert mail["In-Reply-To"] == "<m2@x>"
    assert mail["References"] == "<root@x> <m2@x>"
    provider_ids = {
        r.event()["channel"]: r.event()["provider_message_id"]
        for r in records
        if r.event()["state"] == "sent"
    }
    email_event = events[3]
    assert provider_ids == {
        "web": "ok",
        "slack": "1700000000.000900",
        "whatsapp": "wamid.X",
        "email": f"<{email_event.id}@example.org>",
    }


# --------------------------------------------------------------------------- egress


class ConnectionCounter:
    """A TCP listener that counts the connections it accepts (and closes them)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


async def test_callbacks_to_internal_addresses_fail_without_a_connection(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
) -> None:
    """The production policy (http allowed here only so that the address is what is
    judged): loopback in every notation, a name resolving to it, private and metadata
    addresses are refused before connecting; the listener on the port sees nothing."""
    source, status_topic, sent_topic, dead = make_topics(*TOPICS, partitions=3)
    listener = ConnectionCounter()
    port = listener.port
    targets = [
        f"http://127.0.0.1:{port}/internal",
        f"http://0x7f000001:{port}/hex",
        f"http://2130706433:{port}/decimal",
        f"http://017700000001:{port}/octal",
        f"http://127.1:{port}/short",
        f"http://localhost:{port}/name",
        f"http://[::ffff:127.0.0.1]:{port}/mapped",
        f"https://127.0.0.1:{port}/tls",
        "http://10.0.0.1/private",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00::1]/ula",
        "http://[fe80::1]/link-local",
    ]
    try:
        events = produce_events(
            kafka_bootstrap,
            source,
            [response(f"conv-ssrf-{i}", "web", url) for i, url in enumerate(targets)],
        )
        settings = settings_for(
            kafka_bootstrap,
            topic_prefix,
            callback_allow_http=True,
            callback_allowed_networks=[],
        )
        wanted = {str(e.id) for e in events}

        def all_failed(records: list[Record]) -> bool:
            failed = {str(r.event()["response_id"]) for r in records}
            return wanted <= failed

        async with running(build(settings)):
            records = await read_all_async(kafka_bootstrap, status_topic, all_failed, 60)
            letters = await read_all_async(
                kafka_bootstrap, dead, lambda r: len(r) >= len(targets), 30
            )
    finally:
        listener.close()

    assert listener.accepted == 0
    statuses = [r.event() for r in records]
    assert {s["state"] for s in statuses} == {"failed"}
    assert {s["attempt"] for s in statuses} == {1}
    assert all(s["provider_message_id"] is None and s["http_status"] is None for s in statuses)
    for status in statuses:
        assert "address" in status["error"], status["error"]
    assert len(letters) == len(targets)
    stored = read_all(kafka_bootstrap, sent_topic, lambda r: False, 1)
    assert {e.state for r in stored for e in decode_value(r.value)} <= {"attempted", "failed"}


# --------------------------------------------------------------------------- crashes


def start_delivery(bootstrap: str, prefix: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start the delivery service in a subprocess, retrying quickly."""
    return start_service(
        "delivery",
        bootstrap=bootstrap,
        prefix=prefix,
        log=log,
        env={
            "PIPELINE_DELIVERY__BACKOFF_INITIAL_SECONDS": "0.05",
            **development_env(CALLBACK_SECRET),
            **SHORT_SESSION,
            **env,
        },
    )


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
        return [tp.offset for tp in tps]
    finally:
        consumer.close()


def test_sigkill_right_after_the_receiver_answered_does_not_deliver_twice(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    receivers: Callable[..., Receiver],
    tmp_path: Path,
) -> None:
    source, status_topic, *_ = make_topics(*TOPICS, partitions=3)
    log = tmp_path / "delivery.log"
    processes: list[subprocess.Popen[bytes]] = []

    def kill_after_first(seen: Seen, number: int) -> None:
        if number == 1:
            processes[0].send_signal(signal.SIGKILL)

    receiver = receivers(after=kill_after_first)
    processes.append(start_delivery(kafka_bootstrap, topic_prefix, log))
    try:
        [first] = produce_events(
            kafka_bootstrap, source, [response("conv-crash", "web", f"{receiver.url}/cb")]
        )
        assert processes[0].wait(60) == -signal.SIGKILL, log.read_text()[-3000:]
        processes.append(start_delivery(kafka_bootstrap, topic_prefix, log))
        # The same conversation: once its status is out, the first was handled again.
        [second] = produce_events(
            kafka_bootstrap,
            source,
            [response("conv-crash", "web", f"{receiver.url}/cb", text="again")],
        )
        records = read_all(kafka_bootstrap, status_topic, has_state(second.id, "sent"), 90)
    finally:
        for process in processes:
            stop_service(process)

    requests = Counter(s.key for s in receiver.seen)
    processed = Counter(s.key for s in receiver.processed)
    print(
        f"\nSIGKILL after the receiver's 200: {requests[str(first.id)]} raw requests for the "
        f"first response, processed {processed[str(first.id)]} time(s) by idempotency key; "
        f"statuses of it: {[s['state'] for s in statuses_of(records, first.id)]}"
    )
    assert processed == {str(first.id): 1, str(second.id): 1}
    assert 1 <= requests[str(first.id)] <= 2
    assert requests[str(second.id)] == 1
    assert {s.key for s in receiver.seen if s.key == str(first.id)} == {str(first.id)}
    assert "sent" in [s["state"] for s in statuses_of(records, first.id)]


def test_sigkill_after_the_send_was_recorded_but_not_committed_does_not_send_again(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    receivers: Callable[..., Receiver],
    tmp_path: Path,
) -> None:
    source, status_topic, sent_topic, _ = make_topics(*TOPICS, partitions=3)
    log = tmp_path / "delivery.log"
    receiver = receivers()
    # No commit before the kill: the restarted service reads the response again.
    first_run = start_delivery(
        kafka_bootstrap, topic_prefix, log, PIPELINE_COMMIT_INTERVAL_SECONDS="3600"
    )
    processes = [first_run]
    try:
        [first] = produce_events(
            kafka_bootstrap, source, [response("conv-store", "web", f"{receiver.url}/cb")]
        )
        read_all(kafka_bootstrap, sent_topic, lambda r: len(r) >= 1, 60)
        before = read_all(kafka_bootstrap, status_topic, has_state(first.id, "sent"), 30)
        assert stop_service(first_run, signal.SIGKILL, timeout=30) == -signal.SIGKILL
        offsets = committed_offsets(kafka_bootstrap, f"{topic_prefix}delivery", source, 3)
        assert all(o < 0 for o in offsets), f"an offset was committed: {offsets}"

        processes.append(start_delivery(kafka_bootstrap, topic_prefix, log))
        [second] = produce_events(
            kafka_bootstrap,
            source,
            [response("conv-store", "web", f"{receiver.url}/cb", text="next")],
        )
        records = read_all(kafka_bootstrap, status_topic, has_state(second.id, "sent"), 90)
    finally:
        for process in processes:
            stop_service(process)

    requests = Counter(s.key for s in receiver.seen)
    assert requests == {str(first.id): 1, str(second.id): 1}, log.read_text()[-3000:]
    sent_first = [s for s in statuses_of(records, first.id) if s["state"] == "sent"]
    print(
        f"\nSIGKILL after the sent record, before the commit: {requests[str(first.id)]} "
        f"request for the first response; its sent status {len(sent_first)} times "
        f"(once before the kill: {len(statuses_of(before, first.id))})"
    )
    # Handled again, it was not sent again; its `sent` status repeats with the same id.
    assert len(sent_first) == 2
    assert len({s.id for s in sent_first}) == 1


# --------------------------------------------------------------------------- misconfiguration


@pytest.mark.parametrize(
    ("sent_partitions", "error"),
    [(None, "does not exist"), (2, "must match")],
)
async def test_a_missing_or_differently_partitioned_store_stops_the_service(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    sent_partitions: int | None,
    error: str,
) -> None:
    make_topics("response_ready", "delivery_status", "dead_letters", partitions=3)
    if sent_partitions is not None:
        make_topics("delivery_sent", partitions=sent_partitions)
    service = build(settings_for(kafka_bootstrap, topic_prefix))
    # Guessing what was sent could send twice: the service refuses to start instead.
    with pytest.raises(ConfigError, match=error):
        await asyncio.wait_for(service.run(asyncio.Event()), 60)

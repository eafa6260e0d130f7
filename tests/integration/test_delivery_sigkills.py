"""The delivery service SIGKILLed 10 times while it sends to web, Slack and WhatsApp
stand-ins served over real HTTP, on the real broker.

What each channel may do across the kills is what the table of docs/guarantees/delivery.md
promises: nothing missing; Slack never twice (an uncertain send is looked up by its
metadata first); web repeats only with the same Idempotency-Key; WhatsApp repeats
(at_least_once) or may miss and says so in delivery_status (at_most_once), counted and
printed.

And an operator's message, produced as the console does, sent on by the agent: delivery
SIGKILLed in the crash window and restarted, the user's receiver processes it once.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pipeline.events.model import Event, Metadata
from pipeline.services.agent import assemble
from tests.integration.runtime_support import (
    SERDE,
    Causes,
    Record,
    produce_events,
    read_all,
    read_all_async,
    running,
    settings_for,
    stop_service,
)
from tests.integration.test_agent_handoff_pipeline import HANDOFF_TEXT, operator_event
from tests.integration.test_agent_handoff_pipeline import TOPICS as HANDOFF_TOPICS
from tests.integration.test_delivery_service import (
    TOPICS,
    Receiver,
    Seen,
    committed_offsets,
    has_state,
    response,
    start_delivery,
    statuses_of,
)

WEB, SLACK, WHATSAPP = 300, 100, 100
KILLS = 10
TERMINAL = {"sent", "failed", "unconfirmed"}


@dataclass
class Request:
    path: str
    key: str | None
    body: dict[str, Any]


@dataclass
class ChannelStandIns:
    """One local HTTP server standing in for a web receiver, the Slack Web API
    (``chat.postMessage`` with message metadata; ``conversations.history`` and
    ``conversations.replies`` with ``include_all_metadata``) and the WhatsApp Cloud API.
    Each answer comes after a short random delay, so sends are in flight when a kill lands.
    """

    delay: tuple[float, float] = (0.03, 0.15)
    requests: list[Request] = field(default_factory=list)
    slack: list[dict[str, Any]] = field(default_factory=list)
    lookups: int = 0

    def __post_init__(self) -> None:
        stand_ins = self
        lock = threading.Lock()

        class Handle(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                time.sleep(random.uniform(*stand_ins.delay))
                with lock:
                    stand_ins.requests.append(
                        Request(self.path, self.headers.get("Idempotency-Key"), body)
                    )
                    if self.path.endswith("/chat.postMessage"):
                        ts = f"{time.time():.6f}"
                        while any(m["ts"] == ts for m in stand_ins.slack):
                            ts = f"{float(ts) + 0.000001:.6f}"
                        stand_ins.slack.append({**body, "ts": ts})
                        reply: dict[str, Any] = {"ok": True, "channel": body["channel"], "ts": ts}
                    elif self.path.endswith("/messages"):
                        reply = {"messages": [{"id": f"wamid.{len(stand_ins.requests)}"}]}
                    else:
                        reply = {"id": f"web-{len(stand_ins.requests)}"}
                self.answer(reply)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with lock:
                    stand_ins.lookups += 1
                    found = [
                        m
                        for m in stand_ins.slack
                        if m["channel"] == query["channel"]
                        and float(m["ts"]) >= float(query.get("oldest", "0"))
                        and (
                            not url.path.endswith("/conversations.replies")
                            or m.get("thread_ts") == query["ts"]
                        )
                    ]
                newest_first = sorted(found, key=lambda m: float(m["ts"]), reverse=True)
                page = newest_first[: int(query.get("limit", "100"))]
                with_metadata = query.get("include_all_metadata") == "true"
                messages = [
                    {
                        "type": "message",
                        "ts": m["ts"],
                        "text": m["text"],
                        **({"metadata": m["metadata"]} if with_metadata else {}),
                    }
                    for m in page
                ]
                self.answer({"ok": True, "messages": messages, "has_more": len(found) > len(page)})

            def answer(self, reply: dict[str, Any]) -> None:
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a killed service leaves connections broken mid-answer

        self.server = Server(("127.0.0.1", 0), Handle)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def sends(self) -> int:
        return len(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def stand_ins() -> Iterator[ChannelStandIns]:
    started = ChannelStandIns()
    yield started
    started.close()


def responses(url: str) -> list[Event]:
    """300 web, 100 Slack (half in threads) and 100 WhatsApp responses, several per
    conversation, interleaved."""
    made: list[tuple[int, Event]] = []
    for n in range(WEB):
        made.append((n, response(f"web-{n % 60}", "web", f"{url}/web/cb", text=f"w{n}")))
    for n in range(SLACK):
        thread = f"1700000000.{n % 10:06d}" if n % 2 else None
        made.append((n, response(f"slack-{n % 20}", "slack", f"C{n % 20}", thread_id=thread)))
    for n in range(WHATSAPP):
        made.append((n, response(f"wa-{n % 20}", "whatsapp", f"+4917{n % 20:05d}")))
    made.sort(key=lambda pair: pair[0])
    return [event for _, event in made]


def terminal(wanted: set[str]) -> Callable[[list[Record]], bool]:
    seen = 0
    done: set[str] = set()

    def check(records: list[Record]) -> bool:
        nonlocal seen
        for record in records[seen:]:
            status = record.event()
            if status["state"] in TERMINAL:
                done.add(str(status["response_id"]))
        seen = len(records)
        return wanted <= done

    return check


@pytest.mark.parametrize("whatsapp", ["at_least_once", "at_most_once"])
def test_ten_sigkills_while_sending_lose_nothing_and_repeat_only_as_each_channel_allows(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    stand_ins: ChannelStandIns,
    tmp_path: Path,
    whatsapp: str,
) -> None:
    source, status_topic, *_ = make_topics(*TOPICS, partitions=3)
    log = tmp_path / "delivery.log"
    env = {
        "PIPELINE_DELIVERY__SLACK_BASE_URL": f"{stand_ins.url}/slack/api",
        "PIPELINE_DELIVERY__SLACK_BOT_TOKEN": "xoxb-test",
        "PIPELINE_DELIVERY__WHATSAPP_BASE_URL": f"{stand_ins.url}/graph/v21.0",
        "PIPELINE_DELIVERY__WHATSAPP_PHONE_NUMBER_ID": "555",
        "PIPELINE_DELIVERY__WHATSAPP_TOKEN": "wa-token",
        "PIPELINE_DELIVERY__API_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "PIPELINE_DELIVERY__WHATSAPP_GUARANTEE": whatsapp,
        # Few sends at once, so the kills find the service mid-way.
        "PIPELINE_DELIVERY__MAX_CONCURRENT_SENDS": "2",
        # A restart takes over the killed member's partitions at once.
        "PIPELINE_CONSUMER__GROUP_INSTANCE_ID": "delivery-0",
    }
    events = produce_events(kafka_bootstrap, source, responses(stand_ins.url))
    by_id = {str(e.id): e for e in events}
    rng = random.Random()
    processes: list[subprocess.Popen[bytes]] = []
    kills_mid_send = 0
    try:
        for _ in range(KILLS):
            process = start_delivery(kafka_bootstrap, topic_prefix, log, **env)
            processes.append(process)
            before = stand_ins.sends()
            deadline = time.monotonic() + 60
            while stand_ins.sends() == before and process.poll() is None:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.01)
            time.sleep(rng.uniform(0.1, 0.6))
            # Killed within moments of a send reaching a stand-in: mid-way through sending.
            mark = stand_ins.sends()
            while stand_ins.sends() == mark and time.monotonic() < deadline:
                time.sleep(0.002)
            kills_mid_send += stand_ins.sends() > mark
            time.sleep(rng.uniform(0, 0.03))
            assert stop_service(process, signal.SIGKILL, 30) == -signal.SIGKILL
        processes.append(start_delivery(kafka_bootstrap, topic_prefix, log, **env))
        records = read_all(kafka_bootstrap, status_topic, terminal(set(by_id)), 120)
    finally:
        for process in processes:
            if process.poll() is None:
                stop_service(process)

    final: dict[str, str] = {}
    for record in records:
        status = SERDE.decode(record.value)
        if status["state"] in TERMINAL:
            final.setdefault(str(status["response_id"]), status["state"])
    assert set(final) == set(by_id), f"{len(set(by_id) - set(final))} without a final status"

    def body_id(request: Request) -> str:
        if request.path.endswith("/chat.postMessage"):
            return str(request.body["metadata"]["event_payload"]["response_id"])
        return str(request.key)

    received: dict[str, Counter[str]] = {
        "web": Counter(),
        "slack": Counter(),
        "whatsapp": Counter(),
    }
    for request in stand_ins.requests:
        channel = (
            "slack"
            if "/slack/" in request.path
            else "whatsapp"
            if "/graph/" in request.path
            else "web"
        )
        received[channel][body_id(request)] += 1
    figures: dict[str, dict[str, int]] = {}
    for channel in received:
        wanted = {i for i, e in by_id.items() if e["reply_to"]["channel"] == channel}
        missing = wanted - set(received[channel])
        figures[channel] = {
            "responses": len(wanted),
            "missing": len(missing),
            "repeated": sum(n - 1 for n in received[channel].values()),
            "unconfirmed": sum(1 for i in wanted if final[i] == "unconfirmed"),
        }
        unreported = {i for i in missing if final[i] != "unconfirmed"}
        assert not unreported, f"{channel}: {len(unreported)} missing without saying so"
    print(
        f"\n{KILLS} SIGKILLs while sending ({kills_mid_send} with sends in flight), "
        f"whatsapp_guarantee={whatsapp}; Slack lookups: {stand_ins.lookups}"
    )
    for channel, counts in figures.items():
        print(f"  {channel}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))

    assert figures["web"]["missing"] == figures["slack"]["missing"] == 0
    assert figures["slack"]["repeated"] == 0, "Slack got a response twice"
    assert all(
        final[i] == "sent" for i, e in by_id.items() if e["reply_to"]["channel"] != "whatsapp"
    )
    # Web repeats carry the same Idempotency-Key and the same body: the receiver drops them.
    bodies: dict[str, set[str]] = {}
    for request in stand_ins.requests:
        if request.path.startswith("/web/"):
            assert request.key == request.body["response_id"]
            bodies.setdefault(str(request.key), set()).add(json.dumps(request.body))
    assert all(len(b) == 1 for b in bodies.values())
    if whatsapp == "at_least_once":
        assert figures["whatsapp"]["missing"] == figures["whatsapp"]["unconfirmed"] == 0
    else:
        assert figures["whatsapp"]["repeated"] == 0, "at-most-once sent a WhatsApp reply twice"
    assert kills_mid_send == KILLS, "a kill did not land while sending"


# --------------------------------------------------------------------------- operators

OPERATOR_TEXT = "Ada here: your parcel left the depot this morning."


def asking_for_a_person(conversation: str, callback: str) -> Event:
    metadata = Metadata.new("message_received", conversation, tenant_id="t1", producer="test")
    reply_to = {"channel": "web", "address": callback, "thread_id": None}
    return Event(
        metadata,
        {
            "channel": "web",
            "sender_id": "u1",
            "text": "I want to talk to a human",
            "reply_to": reply_to,
        },
    )


@pytest.mark.parametrize("window", ["after_the_answer", "after_the_sent_record"])
async def test_an_operator_message_reaches_the_user_once_across_a_delivery_sigkill(
    kafka_bootstrap: str,
    topic_prefix: str,
    make_topics: Callable[..., list[str]],
    tmp_path: Path,
    window: str,
) -> None:
    """The console's operator_message becomes the agent's reply; delivery is SIGKILLed
    in the crash window (right after the receiver answered it, or after the sent record
    but before any offset commit) and restarted: the user's callback receiver gets the
    operator's text once (by Idempotency-Key; a web resend carries the same key)."""
    make_topics(*dict.fromkeys((*HANDOFF_TOPICS, *TOPICS)), partitions=2)
    topic = topic_prefix.__add__
    log = tmp_path / "delivery.log"
    processes: list[subprocess.Popen[bytes]] = []
    killed = threading.Event()

    def kill_after_the_operator_text(seen: Seen, number: int) -> None:
        first = seen.body["text"] == OPERATOR_TEXT and not killed.is_set()
        if window == "after_the_answer" and first:
            killed.set()
            processes[0].send_signal(signal.SIGKILL)

    receiver = Receiver(after=kill_after_the_operator_text)
    # No commit before the kill in the second window: the restart reads both replies again.
    never = {"PIPELINE_COMMIT_INTERVAL_SECONDS": "3600"} if window != "after_the_answer" else {}
    # A restart takes over the killed member's partitions at once.
    member = {"PIPELINE_CONSUMER__GROUP_INSTANCE_ID": "delivery-0"}
    settings = settings_for(kafka_bootstrap, topic_prefix, tools={"catalog_wait_seconds": 0})
    asking = asking_for_a_person("conv-op", f"{receiver.url}/cb")
    try:
        async with running(assemble(settings)[0]):
            processes.append(start_delivery(kafka_bootstrap, topic_prefix, log, **never, **member))
            produce_events(kafka_bootstrap, topic("message_received"), [asking])
            await read_all_async(kafka_bootstrap, topic("handoff_requested"), bool, 60)
            reply = operator_event(
                "operator_message", "conv-op", operator_id="op-ada", text=OPERATOR_TEXT
            )
            produce_events(kafka_bootstrap, topic("operator_message"), [reply])
            [response] = [
                r.event()
                for r in await read_all_async(
                    kafka_bootstrap, topic("response_ready"), Causes({str(reply.id)}), 60
                )
                if r.event().metadata.causation_id == reply.id
            ]
            if window == "after_the_sent_record":
                await read_all_async(
                    kafka_bootstrap, topic("delivery_status"), has_state(response.id, "sent"), 60
                )
                processes[0].send_signal(signal.SIGKILL)
            code = await asyncio.to_thread(processes[0].wait, 60)
            assert code == -signal.SIGKILL, log.read_text()[-3000:]
            offsets = committed_offsets(
                kafka_bootstrap, f"{topic_prefix}delivery", topic("response_ready"), 2
            )
            processes.append(start_delivery(kafka_bootstrap, topic_prefix, log, **member))
            # A second operator message: once it is sent, the first was handled again.
            later = operator_event("operator_message", "conv-op", operator_id="op-ada", text="bye")
            produce_events(kafka_bootstrap, topic("operator_message"), [later])
            [next_response] = [
                r.event()
                for r in await read_all_async(
                    kafka_bootstrap, topic("response_ready"), Causes({str(later.id)}), 60
                )
                if r.event().metadata.causation_id == later.id
            ]
            statuses = await read_all_async(
                kafka_bootstrap, topic("delivery_status"), has_state(next_response.id, "sent"), 90
            )
    finally:
        for process in processes:
            if process.poll() is None:
                stop_service(process)
        receiver.close()

    raw = [s for s in receiver.seen if s.body["text"] == OPERATOR_TEXT]
    processed = [s.body["text"] for s in receiver.processed]
    print(
        f"\nSIGKILL {window.replace('_', ' ')}: the operator's text reached the receiver in "
        f"{len(raw)} request(s), processed {processed.count(OPERATOR_TEXT)} time(s); "
        f"offsets committed before the kill: {offsets}"
    )
    assert processed.count(OPERATOR_TEXT) == 1, processed
    assert processed == [HANDOFF_TEXT, OPERATOR_TEXT, "bye"]
    assert {s.key for s in raw} == {str(response.id)}, "a repeat carries the same key"
    assert len({s.raw for s in raw}) == 1, "and the same body"
    assert "sent" in [s["state"] for s in statuses_of(statuses, response.id)]
    if window == "after_the_sent_record":
        assert all(o < 0 for o in offsets), f"an offset was committed: {offsets}"
        assert len(raw) == 1, "recorded as sent: not sent again"
    else:
        assert 1 <= len(raw) <= 2

"""What a chat user feels when the model writes its answer: time to the first words at the
browser, against the model's own first and last word.

A stand-in model (``pipeline.dev.model_stand_in``, served from a process of its own)
writes every answer as ``--tokens`` words at ``--tokens-per-second``. This starts gateway,
agent and delivery against a broker on 127.0.0.1 with the agent on that model, and drives
chat-page turns at fixed open-loop rates: per turn a chat token, the conversation's SSE
stream (``GET /v1/web/stream``) opened as a browser's, then the message
(``POST /v1/web/chat/messages``). Each stream event is timed as it arrives; the model
notes when it wrote each answer's first and last word (one clock: one machine). Per rate
it reports:

- first delta after the model's first word (p50/p95/p99): what streaming buys;
- the answer (the ``message`` event) after the model's last word;
- first text after the turn was sent, and the model's first word after it (the wait
  before the model starts: the agent's queue and its HTTP connections to the model);
- deltas per answer; previews that were not the start of their answer (a delta lost, or
  out of order), and answers that arrived before their last deltas (and replaced them);
- where the time goes, from the record timestamps: the model's first word to the first
  ``response_delta`` record (the agent), that record to the browser (Kafka, the gateway);
  the model's last word to the answer's ``web_outgoing`` record (agent, delivery), that
  record to the browser.

In the same run it does the same without streaming (``llm.stream`` off: the model answers
whole once it has written the last word), where the first text is the answer itself; the
report gives how much later that first text arrives.

    python benchmarks/stream_latency.py [--rates 10,50] [--seconds 10]

Uses --bootstrap or KAFKA_BOOTSTRAP_SERVERS (127.0.0.1 only), or starts the local dev
broker when neither is set. It stops by itself; every topic it makes is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.process
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from sse_client import EventStream, StreamRefused  # the modules beside this one
from turn_http import Connections
from turn_latency import (
    TopicTimes,
    broker,
    cpu_seconds,
    delete_topics,
    fmt,
    free_port_run,
    percentile,
)

from pipeline.dev.kafka import free_port
from pipeline.dev.model_stand_in import StandInModel
from pipeline.dev.stack.local import LocalStack

SERVICES = ("gateway", "agent", "delivery")
TENANT, TOKEN = "bench", "bench-web-token"
DELTAS, ANSWERS = "response_delta", "web_outgoing"
HOPS = (
    "first word to delta record",
    "delta record to browser",
    "last word to answer record",
    "answer record to browser",
)
MODES = {
    "streaming": {"PIPELINE_LLM__STREAM": "true", "PIPELINE_AGENT__STREAM_CHANNELS": '["web"]'},
    "without streaming": {"PIPELINE_LLM__STREAM": "false"},
}


# ----------------------------------------------------------------------------- the model


class ModelProcess:
    """The stand-in model in a process of its own (its HTTP work stays off this one's
    loop); :meth:`written` asks it when each answer's first and last word were written."""

    def __init__(self, tokens: int, tokens_per_second: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self.process: multiprocessing.process.BaseProcess = context.Process(
            target=_serve_model, args=(tokens, tokens_per_second, theirs), daemon=True
        )
        self.process.start()
        theirs.close()
        self.port: int = self._conn.recv()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def written(self) -> dict[str, tuple[float, float | None]]:
        """Prompt -> (first word, last word) times of every answer so far."""
        self._conn.send("written")
        answer: dict[str, tuple[float, float | None]] = self._conn.recv()
        return answer

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self.process.join(15)
        if self.process.is_alive():
            self.process.kill()


def _serve_model(tokens: int, tokens_per_second: float, conn: Connection) -> None:
    with StandInModel(tokens, tokens_per_second) as model:
        conn.send(model.port)
        while conn.recv() == "written":
            conn.send({k: (w.first, w.last) for k, w in list(model.written.items())})


# ----------------------------------------------------------------------------- measuring


@dataclass
class Turn:
    sent: float  # scheduled send time
    refused: str = ""
    first_delta: float | None = None
    answered: float | None = None
    deltas: int = 0
    preview: str = ""
    next_sequence: int = 0
    restarts: int = 0  # the preview began again (sequence 0: the model was asked again)
    gaps: int = 0  # a delta that did not follow the one before (one was lost)
    answer: str = ""

    def add(self, delta: dict[str, Any]) -> None:
        """A delta's text, added to the preview as a browser's page does."""
        sequence = delta["sequence"]
        if sequence == 0 and self.next_sequence > 0:
            self.restarts += 1
            self.preview = ""
        elif sequence != self.next_sequence:
            self.gaps += 1
        self.next_sequence = sequence + 1
        self.preview += delta["text"]


@dataclass
class Phase:
    mode: str
    rate: float
    turns: dict[str, Turn] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds
    wall: float = 0.0  # seconds from the first send to the last answer

    def summary(
        self,
        written: dict[str, tuple[float, float | None]],
        model: StandInModel,
        records: dict[str, dict[str, int]],
    ) -> dict[str, Any]:
        """The phase's figures; ``records``: topic -> conversation -> first record's
        timestamp (ms), for ``response_delta`` and ``web_outgoing``."""

        def ms(values: list[float]) -> dict[str, float]:
            return {f"p{q}": percentile(values, q) for q in (50, 95, 99)}

        first_delta: list[float] = []
        answer_after_last: list[float] = []
        first_text: list[float] = []
        model_start: list[float] = []
        first_vs_model: list[float] = []
        hops: dict[str, list[float]] = {name: [] for name in HOPS}
        delta_records, answer_records = records[DELTAS], records[ANSWERS]
        wrong = previews_off = cut_short = 0
        answered = [(k, t) for k, t in self.turns.items() if t.answered is not None]
        for key, turn in answered:
            assert turn.answered is not None
            if turn.answer != " ".join(model.words(key)):
                wrong += 1
            if turn.deltas and not turn.answer.startswith(turn.preview):
                previews_off += 1
            elif turn.deltas and turn.preview != turn.answer:
                cut_short += 1  # the answer came before the last deltas, and replaced them
            first = turn.first_delta if turn.first_delta is not None else turn.answered
            first_text.append((first - turn.sent) * 1000)
            began, ended = written.get(key, (None, None))
            if began is None:
                continue
            model_start.append((began - turn.sent) * 1000)
            first_vs_model.append((first - began) * 1000)
            if turn.first_delta is not None:
                first_delta.append((turn.first_delta - began) * 1000)
                if key in delta_records:
                    hops["first word to delta record"].append(delta_records[key] - began * 1000)
                    hops["delta record to browser"].append(
                        turn.first_delta * 1000 - delta_records[key]
                    )
            if ended is not None:
                answer_after_last.append((turn.answered - ended) * 1000)
                if key in answer_records:
                    hops["last word to answer record"].append(answer_records[key] - ended * 1000)
                    hops["answer record to browser"].append(
                        turn.answered * 1000 - answer_records[key]
                    )
        counts = [t.deltas for _, t in answered]
        return {
            "mode": self.mode,
            "rate": self.rate,
            "sent": len(self.turns),
            "answered": len(answered),
            "refused": sum(1 for t in self.turns.values() if t.refused),
            "wrong_answers": wrong,
            "previews_not_the_answer": previews_off,
            "answers_before_the_last_delta": cut_short,
            "restarted_previews": sum(1 for _, t in answered if t.restarts),
            "previews_with_gaps": sum(1 for _, t in answered if t.gaps),
            "first_delta_after_model_first_ms": ms(first_delta),
            "answer_after_model_last_ms": ms(answer_after_last),
            "first_text_after_send_ms": ms(first_text),
            "first_text_after_model_first_ms": ms(first_vs_model),
            "model_first_after_send_ms": ms(model_start),
            "hops_ms": {name: ms(values) for name, values in hops.items()},
            "deltas_per_answer": {
                "mean": sum(counts) / len(counts) if counts else float("nan"),
                "max": max(counts, default=0),
            },
            "cpu_share": {name: seconds / self.wall for name, seconds in self.cpu.items()},
            "cpu_ms_per_answer": {
                name: seconds * 1000 / max(1, len(answered)) for name, seconds in self.cpu.items()
            },
        }


# ----------------------------------------------------------------------------- driving


class Driver:
    """Chat-page turns against one gateway: tokens, streams, messages."""

    def __init__(self, port: int, tokens: int, tokens_per_second: float, grace: float) -> None:
        self.port = port
        self.messages = Connections("127.0.0.1", port)
        self.turn_seconds = tokens / tokens_per_second + grace

    async def chat_tokens(self, keys: list[str]) -> dict[str, str]:
        """A chat token per turn (one user, one conversation each), issued beforehand."""
        tokens: dict[str, str] = {}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as client:
            for key in keys:
                issued = await client.post(
                    "/v1/web/chat-tokens",
                    json={"user_id": key, "conversation_id": key},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
                issued.raise_for_status()
                tokens[key] = issued.json()["token"]
        return tokens

    async def turn(self, key: str, token: str, turn: Turn) -> None:
        """Open the stream, send the message, read the stream until the answer."""
        try:
            stream = await EventStream.open("127.0.0.1", self.port, f"/v1/web/stream?token={token}")
        except (OSError, StreamRefused) as exc:
            turn.refused = f"stream: {exc}"
            return
        try:
            body = json.dumps({"text": key, "message_id": key}).encode()
            status = await self.messages.post(
                "/v1/web/chat/messages", body, {"Authorization": f"Bearer {token}"}
            )
            if status != 202:
                turn.refused = f"message: {status}"
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.turn_seconds):
                    async for event in stream.events():
                        now = time.time()
                        if event.event == "delta":
                            if turn.first_delta is None:
                                turn.first_delta = now
                            turn.deltas += 1
                            turn.add(json.loads(event.data))
                        elif event.event == "message":
                            turn.answered = now
                            turn.answer = json.loads(event.data)["text"]
                            return
        finally:
            stream.close()

    async def run(
        self, phase: Phase, seconds: float, run_id: str, pids: dict[str, int] | None = None
    ) -> None:
        """Send the phase's turns at its rate for ``seconds``; wait for their answers. The
        CPU time of ``pids`` is measured from the first send to the last answer."""
        count = max(1, round(phase.rate * seconds))
        slug = phase.mode.replace(" ", "-")
        keys = [f"{run_id}-{slug}-{phase.rate:g}-{i}" for i in range(count)]
        tokens = await self.chat_tokens(keys)
        pids = pids or {}
        before, started = {n: cpu_seconds(p) for n, p in pids.items()}, time.monotonic()
        start = time.time() + 0.2
        tasks = []
        for i, key in enumerate(keys):
            scheduled = start + i / phase.rate
            delay = scheduled - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            phase.turns[key] = Turn(scheduled)
            tasks.append(asyncio.ensure_future(self.turn(key, tokens[key], phase.turns[key])))
        await asyncio.gather(*tasks)
        phase.wall = time.monotonic() - started
        phase.cpu = {n: cpu_seconds(p) - before[n] for n, p in pids.items()}

    async def close(self) -> None:
        await self.messages.close()


# ----------------------------------------------------------------------------- the run


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "| mode | rate | answered | first delta after the model's first word p50 / p95 / p99 "
        "| answer after the model's last word p50 / p95 / p99 | first text after send p50 / p95 "
        "| model's first word after send p50 | deltas per answer |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def three(row: dict[str, float]) -> str:
        return f"{fmt(row['p50'])} / {fmt(row['p95'])} / {fmt(row['p99'])} ms"

    for r in results:
        lines.append(
            f"| {r['mode']} | {r['rate']:g}/s | {r['answered']}/{r['sent']} "
            f"| {three(r['first_delta_after_model_first_ms'])} "
            f"| {three(r['answer_after_model_last_ms'])} "
            f"| {fmt(r['first_text_after_send_ms']['p50'])} / "
            f"{fmt(r['first_text_after_send_ms']['p95'])} ms "
            f"| {fmt(r['model_first_after_send_ms']['p50'])} ms "
            f"| {fmt(r['deltas_per_answer']['mean'], 1)} (max {r['deltas_per_answer']['max']}) |"
        )
    by = {(r["mode"], r["rate"]): r for r in results}
    for (mode, rate), whole in by.items():
        streamed = by.get(("streaming", rate))
        if mode != "without streaming" or streamed is None:
            continue
        after_model = [r["first_text_after_model_first_ms"]["p50"] for r in (streamed, whole)]
        after_send = [r["first_text_after_send_ms"]["p50"] for r in (streamed, whole)]
        lines.append(
            f"\nat {rate:g}/s without streaming the first text arrives "
            f"{fmt(after_model[1] - after_model[0])} ms later after the model's first word "
            f"(p50 {fmt(after_model[0])} ms streaming, {fmt(after_model[1])} ms without) and "
            f"{fmt(after_send[1] - after_send[0])} ms later after the send "
            f"(p50 {fmt(after_send[0])} ms, {fmt(after_send[1])} ms)"
        )
    lines += ["", "where the time goes, p50 / p99 ms (record timestamps)", ""]
    lines.append("| mode | rate | " + " | ".join(HOPS) + " |")
    lines.append("|---|---|" + "---|" * len(HOPS))
    for r in results:
        cells = [f"{fmt(r['hops_ms'][h]['p50'])} / {fmt(r['hops_ms'][h]['p99'])}" for h in HOPS]
        lines.append(f"| {r['mode']} | {r['rate']:g}/s | " + " | ".join(cells) + " |")
    lines.append("")
    for r in results:
        shares = ", ".join(
            f"{k} {v:.0%} ({r['cpu_ms_per_answer'][k]:.1f})" for k, v in r["cpu_share"].items()
        )
        lines.append(
            f"CPU, share of one core (ms per answer), {r['mode']} {r['rate']:g}/s: {shares}"
        )
    for r in results:
        lines.append(
            f"{r['mode']} {r['rate']:g}/s: {r['refused']} refused, {r['wrong_answers']} wrong "
            f"answers, {r['previews_not_the_answer']} previews that were not the start of "
            f"their answer ({r['restarted_previews']} began again, {r['previews_with_gaps']} "
            f"missed a delta), {r['answers_before_the_last_delta']} answers that came before "
            "their last deltas"
        )
    return "\n".join(lines)


def stack_for(
    mode: str, bootstrap: str, prefix: str, model: ModelProcess, log_dir: Path
) -> tuple[LocalStack, int]:
    gateway_port = free_port()
    env = {
        "PIPELINE_BOOTSTRAP_SERVERS": bootstrap,
        "PIPELINE_TOPIC_PREFIX": prefix,
        "PIPELINE_TOPIC_REPLICATION_FACTOR": "1",
        "PIPELINE_METRICS_HOST": "127.0.0.1",
        "PIPELINE_GATEWAY__HOST": "127.0.0.1",
        "PIPELINE_GATEWAY__PORT": str(gateway_port),
        "PIPELINE_GATEWAY__WEB_TOKENS": json.dumps({TENANT: TOKEN}),
        # Every stream comes from 127.0.0.1, where browsers would come from many addresses.
        "PIPELINE_GATEWAY__STREAM_MAX_PER_CLIENT": "5000",
        "PIPELINE_LLM__PROVIDER": "openai",
        "PIPELINE_LLM__BASE_URL": model.base_url,
        "PIPELINE_LLM__MODEL": "stand-in",
        "PIPELINE_LLM__API_KEY": "stand-in-key",
        # The egress policy refuses loopback addresses unless allowed: the model is local.
        "PIPELINE_LLM__ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "PIPELINE_TOOLS__CATALOG_WAIT_SECONDS": "0",
        **MODES[mode],
    }
    stack = LocalStack(
        env, services=SERVICES, metrics_base_port=free_port_run(len(SERVICES)), log_dir=log_dir
    )
    return stack, gateway_port


async def drive(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    log_dir = Path(tempfile.mkdtemp(prefix="stream-latency-"))
    model = ModelProcess(args.tokens, args.tokens_per_second)
    stand_in = StandInModel(args.tokens, args.tokens_per_second)  # its words, not served
    results: list[dict[str, Any]] = []
    prefixes: list[str] = []
    print(f"model on {model.base_url}, logs in {log_dir}", flush=True)
    try:
        for mode in args.modes:
            prefix = f"streams-{run_id}-{len(prefixes)}."
            prefixes.append(prefix)
            stack, gateway_port = stack_for(mode, bootstrap, prefix, model, log_dir / mode[:4])
            driver = Driver(gateway_port, args.tokens, args.tokens_per_second, args.grace)
            times: TopicTimes | None = None
            try:
                await asyncio.to_thread(stack.start)
                topics = {f"{prefix}{t}": t for t in (DELTAS, ANSWERS)}
                times = TopicTimes(bootstrap, list(topics))
                assert stack.supervisor is not None
                pids = {s.name: s.process.pid for s in stack.supervisor.services if s.process}
                pids["model"] = model.process.pid or 0
                pids["benchmark"] = os.getpid()  # the browsers' streams and the sender
                ports = {s: stack.metrics_port(s) for s in SERVICES}
                print(f"{mode}: services {pids}, metrics on {ports}", flush=True)
                warmup = Phase(f"{mode} warm-up", args.warmup_rate)
                await driver.run(warmup, args.warmup_seconds, run_id)
                if any(t.answered is None for t in warmup.turns.values()):
                    raise SystemExit(f"{mode}: warm-up turns were not all answered ({log_dir})")
                for rate in args.rates:
                    phase = Phase(mode, rate)
                    await driver.run(phase, args.seconds, run_id, pids)
                    await asyncio.sleep(0.5)  # the reader of the record timestamps catches up
                    records = {topics[t]: by_key for t, by_key in times.times.items()}
                    results.append(phase.summary(model.written(), stand_in, records))
                    print(json.dumps(results[-1]), flush=True)
            finally:
                if times is not None:
                    times.close()
                await driver.close()
                await asyncio.to_thread(stack.stop)
    finally:
        model.stop()
        delete_topics(bootstrap, prefixes)
    text = report(results)
    print(text, flush=True)
    return {"results": results, "report": text, "logs": str(log_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--rates", default="10,50", type=lambda s: [float(r) for r in s.split(",")])
    parser.add_argument("--seconds", type=float, default=10.0, help="Sending time per rate.")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        type=lambda s: s.split(","),
        help="With and without streaming, or one of them.",
    )
    parser.add_argument("--tokens", type=int, default=200, help="Words per answer.")
    parser.add_argument("--tokens-per-second", type=float, default=50.0)
    parser.add_argument(
        "--grace", type=float, default=15.0, help="Longest wait for an answer after it is written."
    )
    parser.add_argument("--warmup-rate", type=float, default=2.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--json", type=Path, help="Write the results here too.")
    args = parser.parse_args()
    with broker(args.bootstrap) as bootstrap:
        outcome = asyncio.run(drive(args, bootstrap))
    if args.json is not None:
        args.json.write_text(json.dumps(outcome, indent=1))


if __name__ == "__main__":
    main()

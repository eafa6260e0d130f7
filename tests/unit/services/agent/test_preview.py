"""Answers previewed while the model writes them, run by the real runtime in memory:
deltas in order whose text is the answer, the answer carrying their stream id; a few
deltas for many words; a stream that ends in tool calls marked interrupted; a restart
from sequence 0; nothing previewed for channels that do not preview, or when the
completion is reused from the journal; deltas written outside the transaction."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from confluent_kafka import KafkaError
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.config.sections import package_version
from pipeline.llm import ChatRequest, Completion, DeterministicProvider
from pipeline.llm.streaming import TextSink
from pipeline.services.agent import assemble
from pipeline.services.agent.preview import stream_id_of
from pipeline.testing import TestService
from pipeline.toolbox import builtin_tools
from pipeline.toolbox.tool_offer import StaticOffer
from tests.unit.services.agent.agent_support import ADDRESS as CALLBACK
from tests.unit.services.agent.agent_support import call

ADDRESS = {"channel": "web", "address": "", "thread_id": None}  # the browsers' stream

EOS = {"processing_guarantee": "exactly_once", "commit_interval_seconds": 3600.0}
ABORTABLE = KafkaError(KafkaError._STATE, "a broker failed", txn_requires_abort=True)


class WritingProvider:
    """Streams scripted pieces of text, then answers with ``completion`` (its text by
    default); ``restart_after`` pieces, it starts the answer again once."""

    name = "writing"
    model = "w"
    can_stream = True

    def __init__(
        self,
        pieces: list[str],
        completion: Completion | None = None,
        pause: float = 0.0,
        restart_after: int | None = None,
    ) -> None:
        self.pieces = pieces
        self.completion = completion or Completion(text="".join(pieces))
        self.pause = pause
        self.restart_after = restart_after
        self.calls = 0

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls += 1
        return self.completion

    async def stream(self, request: ChatRequest, sink: TextSink) -> Completion:
        self.calls += 1
        if self.restart_after is not None:
            for piece in self.pieces[: self.restart_after]:
                sink.write(piece)
                await asyncio.sleep(self.pause)
            sink.restart()
        for piece in self.pieces:
            sink.write(piece)
            await asyncio.sleep(self.pause)
        return self.completion

    async def aclose(self) -> None:
        return None


def agent_service(provider: Any, **settings: Any) -> tuple[Any, Any]:
    config = Settings(metrics_port=0, max_retries=0, **settings)
    offer = StaticOffer.of(builtin_tools(config.tools))
    return assemble(config, provider=provider, tools=offer, registry=CollectorRegistry())


def user(text: str, address: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"channel": "web", "sender_id": "u1", "text": text, "reply_to": address or ADDRESS}


async def deltas_of(svc: TestService, stream_id: uuid.UUID, *, ended: bool = True) -> list[Any]:
    """The stream's deltas once they stop coming (the last one at its end)."""

    def of_stream() -> list[Any]:
        return [d for d in svc.outputs("response_delta") if d["stream_id"] == stream_id]

    seen = -1
    while len(of_stream()) != seen:
        seen = len(of_stream())
        await asyncio.sleep(0.2)
    return of_stream()


async def test_deltas_come_in_order_and_the_answer_replaces_them() -> None:
    words = [f"word{i} " for i in range(60)]
    provider = WritingProvider(words, pause=0.005)
    service, _ = agent_service(provider, agent={"delta_interval_seconds": 0.05})
    async with TestService(service) as svc:
        question = await svc.send("message_received", user("tell me"), conversation_id="c1")
        await svc.settle()
        (answer,) = svc.outputs("response_ready")
        stream = stream_id_of(question.id)
        deltas = await deltas_of(svc, stream)
    assert answer["stream_id"] == stream
    assert [d["sequence"] for d in deltas] == list(range(len(deltas)))
    assert "".join(d["text"] for d in deltas) == answer["text"] == "".join(words)
    # 60 words over about 0.3 s at most one delta per 50 ms: a few records, not 60.
    assert 2 <= len(deltas) <= 15
    assert not any(d["interrupted"] for d in deltas)
    first = deltas[0]
    assert first["reply_to"] == ADDRESS
    assert first["ingress_at"] == question.metadata.occurred_at
    assert first.metadata.correlation_id == question.id
    assert first.metadata.causation_id == question.id
    assert first.conversation_id == "c1"
    assert {d.agent_version for d in deltas} == {package_version()}
    sent = service.registry.get_sample_value(
        "pipeline_agent_response_deltas_total", {"service": "agent", "outcome": "sent"}
    )
    assert sent == len(deltas)


async def test_many_characters_waiting_go_before_the_interval() -> None:
    provider = WritingProvider(["x" * 50] * 10)
    service, _ = agent_service(
        provider, agent={"delta_interval_seconds": 60.0, "delta_max_chars": 100}
    )
    async with TestService(service) as svc:
        question = await svc.send("message_received", user("long"), conversation_id="c1")
        await svc.settle()
        deltas = await deltas_of(svc, stream_id_of(question.id))
    # Without the size limit a 60 s interval would hold everything after the first delta
    # until the answer is complete; with it, text goes as soon as 100 characters wait.
    assert "".join(d["text"] for d in deltas) == "x" * 500
    assert all(len(d["text"]) <= 500 for d in deltas)


async def test_a_stream_that_ends_in_tool_calls_is_marked_interrupted() -> None:
    provider = WritingProvider(["Let me ", "check."], completion=call("current_time"))
    service, _ = agent_service(provider)
    async with TestService(service) as svc:
        question = await svc.send("message_received", user("time?"), conversation_id="c1")
        await svc.settle()
        assert svc.outputs("tool_called")
        deltas = await deltas_of(svc, stream_id_of(question.id))
    assert deltas[-1]["interrupted"] is True
    assert not any(d["interrupted"] for d in deltas[:-1])


async def test_an_answer_started_again_starts_its_stream_again_at_zero() -> None:
    provider = WritingProvider(["one ", "two ", "three"], pause=0.15, restart_after=2)
    service, _ = agent_service(provider, agent={"delta_interval_seconds": 0.0})
    async with TestService(service) as svc:
        question = await svc.send("message_received", user("count"), conversation_id="c1")
        await svc.settle()
        deltas = await deltas_of(svc, stream_id_of(question.id))
    sequences = [d["sequence"] for d in deltas]
    restart = sequences.index(0, 1)
    assert sequences[:restart] == list(range(restart))
    assert sequences[restart:] == list(range(len(sequences) - restart))
    assert "".join(d["text"] for d in deltas[restart:]) == "one two three"


async def test_channels_that_do_not_preview_get_the_answer_only() -> None:
    provider = WritingProvider(["Hello ", "there"])
    service, _ = agent_service(provider)
    email = {"channel": "email", "address": "ada@example.com", "thread_id": None}
    async with TestService(service) as svc:
        await svc.send("message_received", user("hi", email), conversation_id="c1")
        await svc.send("message_received", user("hi", CALLBACK), conversation_id="c2")
        await svc.settle()
        answers = svc.outputs("response_ready")
        await asyncio.sleep(0.2)
        assert svc.outputs("response_delta") == []
    assert [a["stream_id"] for a in answers] == [None, None]
    assert [a["text"] for a in answers] == ["Hello there", "Hello there"]
    assert provider.calls == 2


async def test_a_provider_that_does_not_stream_previews_nothing() -> None:
    service, _ = agent_service(DeterministicProvider())
    async with TestService(service) as svc:
        await svc.send("message_received", user("hello"), conversation_id="c1")
        await svc.settle()
        (answer,) = svc.outputs("response_ready")
        assert svc.outputs("response_delta") == []
    assert answer["stream_id"] is None


async def test_deltas_are_written_at_once_outside_the_transaction() -> None:
    """Exactly-once: the answer waits for the transaction; its preview does not."""
    provider = WritingProvider(["An ", "answer"])
    service, _ = agent_service(provider, llm={"provider": "openai"}, **EOS)
    async with TestService(service, **EOS) as svc:
        question = await svc.send("message_received", user("q"), conversation_id="c1")
        await svc.settle()
        assert svc.outputs("response_ready") == []  # not committed yet
        deltas = await deltas_of(svc, stream_id_of(question.id))
        assert "".join(d["text"] for d in deltas) == "An answer"
        await svc.commit()
        (answer,) = svc.outputs("response_ready")
    assert answer["stream_id"] == stream_id_of(question.id)


async def test_a_completion_reused_from_the_journal_is_not_streamed_again() -> None:
    provider = WritingProvider(["Once ", "only"])
    service, _ = agent_service(provider, **EOS)
    async with TestService(service, **EOS) as svc:
        question = await svc.send("message_received", user("q"), conversation_id="c1")
        await svc.settle()
        stream = stream_id_of(question.id)
        first = await deltas_of(svc, stream)
        svc.broker.fail_next_commit(ABORTABLE)
        await svc.commit()  # aborted: the event is handled again, its completion reused
        await svc.settle()
        await svc.commit()
        (answer,) = svc.outputs("response_ready")
        assert await deltas_of(svc, stream) == first
    assert provider.calls == 1
    assert answer["stream_id"] == stream
    assert answer["text"] == "Once only"

"""Running an evaluation: recorded conversations in, one result per conversation out.

The set is read on a worker thread (:mod:`.reader`) into a queue of a few conversations;
``concurrency`` replays run at once on the event loop, each conversation on a fresh
in-memory service (:func:`pipeline.replay.engine.run_in_memory`: nothing reaches Kafka, a
channel or a tool). Each result goes to ``sink`` as soon as it is made and is not kept,
so memory is bounded by the conversations in the queue and in flight, not by the set.

With ``answers="recorded"`` both versions run with the recorded provider (each model call
answered as production's model answered it); with ``"fresh"`` they ask their configured
model. A baseline, when given, replays the same inputs through the version running today,
for the tokens, cost and latency before the change.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from pipeline.config import Settings
from pipeline.errors import ConfigError, PipelineError
from pipeline.evaluation.candidate import Candidate
from pipeline.evaluation.checks import Check, GradedCheck
from pipeline.evaluation.outcome import ConversationResult, Usage, tokens_of
from pipeline.evaluation.reader import RecordedEvents, read_set
from pipeline.evaluation.recorded_set import RecordedSet
from pipeline.events.serde import SingleObjectSerde
from pipeline.llm.base import LLMProvider
from pipeline.llm.recorded import RecordedAnswers
from pipeline.replay.diff import compare
from pipeline.replay.engine import SETTLE_SECONDS, Replayed, run_in_memory
from pipeline.replay.recording import Recording, select
from pipeline.runtime.service import Service
from pipeline.toolbox.catalog import CatalogFollower
from pipeline.toolbox.tool_offer import CatalogOffer, StaticOffer, ToolOffer

log = logging.getLogger(__name__)

Answers = Literal["fresh", "recorded"]
_DONE = object()


@dataclass(slots=True)
class Evaluation:
    """What to evaluate and how."""

    settings: Settings
    serde: SingleObjectSerde
    recorded: RecordedSet
    candidate: Candidate
    baseline: Candidate | None = None
    answers: Answers = "fresh"
    checks: list[Check] = field(default_factory=list)
    graded: list[GradedCheck] = field(default_factory=list)
    grader: LLMProvider | None = None
    concurrency: int = 8
    settle_seconds: float = SETTLE_SECONDS
    tools: ToolOffer | None = None  # None: the tool catalog as it is now, read once


@dataclass(slots=True)
class Version:
    """A version as it is replayed: its candidate, its settings, the tools it is offered."""

    candidate: Candidate
    settings: Settings
    tools: ToolOffer


async def evaluate(
    evaluation: Evaluation,
    sink: Callable[[ConversationResult], None],
    conversations: Iterable[RecordedEvents] | None = None,
) -> int:
    """Evaluate every conversation of the set (read from Kafka, or ``conversations``),
    handing each result to ``sink``; returns how many were evaluated."""
    candidate = await version(evaluation, evaluation.candidate)
    baseline = await version(evaluation, evaluation.baseline) if evaluation.baseline else None

    def source() -> Iterable[RecordedEvents]:
        if conversations is not None:
            return conversations
        return read_set(evaluation.settings, evaluation.serde, evaluation.recorded)

    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=2 * evaluation.concurrency)
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for item in source():
                if stop.is_set():
                    return
                asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        except BaseException as exc:  # handed to the event loop, raised there
            failure.append(exc)
        finally:
            if not stop.is_set():
                for _ in range(evaluation.concurrency):
                    asyncio.run_coroutine_threadsafe(queue.put(_DONE), loop).result()

    done = 0

    async def work() -> None:
        nonlocal done
        while (item := await queue.get()) is not _DONE:
            assert isinstance(item, RecordedEvents)
            sink(await evaluate_conversation(evaluation, item, candidate, baseline))
            done += 1

    reader = threading.Thread(target=read, name="evaluation-reader", daemon=True)
    reader.start()
    workers = [asyncio.create_task(work()) for _ in range(evaluation.concurrency)]
    try:
        await asyncio.gather(*workers)
    finally:
        for worker in workers:  # one failed: the others stop too
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        stop.set()
        while not queue.empty():  # let a reader waiting on a full queue go
            queue.get_nowait()
        await asyncio.to_thread(reader.join)
    if failure:
        raise failure[0]
    return done


async def version(evaluation: Evaluation, candidate: Candidate) -> Version:
    """``candidate`` ready to replay: its settings checked, its service built once (a wrong
    spec fails here, before anything is read), its tool offer read."""
    recorded = {"llm": {"provider": "recorded"}} if evaluation.answers == "recorded" else {}
    settings = candidate.settings(evaluation.settings, also=recorded)
    offer: ToolOffer
    if evaluation.tools is not None:
        candidate.build(settings, evaluation.tools)
        return Version(candidate, settings, evaluation.tools)
    # Tools are offered as the catalog holds them now, read once for every replay.
    try:
        follower = CatalogFollower(settings)
        await follower.refresh()
        tools = settings.tools.model_copy(update={"catalog_wait_seconds": 0.0})
        offer = CatalogOffer(settings.model_copy(update={"tools": tools}), follower)
    except (ConfigError, PipelineError) as exc:
        log.warning("no tool catalog to offer the replayed agent: %s", exc)
        offer = StaticOffer(())
    candidate.build(settings, offer)
    return Version(candidate, settings, offer)


async def evaluate_conversation(
    evaluation: Evaluation,
    item: RecordedEvents,
    candidate: Version,
    baseline: Version | None,
) -> ConversationResult:
    """One conversation replayed through the candidate (and the baseline), compared."""
    conversation_id = item.conversation.conversation_id
    service = candidate.candidate.build(candidate.settings, candidate.tools)
    recording = select(conversation_id, item.events, service)
    replayed, usage = await _replay(evaluation, candidate, recording, service)
    base: tuple[Replayed, Usage] | None = None
    if baseline is not None:
        base = await _replay(evaluation, baseline, recording)
    diff = compare(
        conversation_id,
        recording.inputs,
        recording.outputs,
        replayed.outputs,
        replayed.dead_letters,
    )
    result = ConversationResult(
        item.conversation,
        diff,
        candidate_seconds=replayed.seconds,
        candidate_usage=usage,
        baseline_seconds=base[0].seconds if base else None,
        baseline_usage=base[1] if base else None,
        complete=item.complete,
    )
    for check in evaluation.checks:
        result.checks.append(await check.run(result))
    if evaluation.grader is not None:
        for graded in evaluation.graded:
            result.checks.append(await graded.run(evaluation.grader, result))
    return result


async def _replay(
    evaluation: Evaluation,
    side: Version,
    recording: Recording,
    service: Service | None = None,
) -> tuple[Replayed, Usage]:
    if service is None:
        service = side.candidate.build(side.settings, side.tools)
    answers = None
    if evaluation.answers == "recorded":
        answers = RecordedAnswers.from_outputs(recording.outputs)
    try:
        replayed = await run_in_memory(
            service,
            recording.inputs,
            answers=answers,
            settle_seconds=evaluation.settle_seconds,
        )
    except (TimeoutError, PipelineError, RuntimeError) as exc:
        # One conversation the service could not finish does not stop the others.
        replayed = Replayed(dead_letters=[f"the replay did not finish: {exc}"])
    prompt, completion = tokens_of(service.registry)
    price = side.settings.llm.prices.get(side.settings.llm.model)
    cost = price.cost(prompt, completion) if price is not None else None
    return replayed, Usage(prompt, completion, cost)

"""Running recorded inputs through a service in memory, and comparing what comes out.

The service runs under :class:`~pipeline.in_memory.InMemoryService`: the real runtime over an
in-memory broker, so nothing it emits reaches Kafka or a channel. Inputs go in one at a
time, each handled to the end (outputs, state) before the next, in the order they were
recorded. The service's state stores start from the in-memory changelog: empty when the
replay starts at the conversation's beginning, else seeded with the recorded state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.config import Settings
from pipeline.events.model import Event
from pipeline.events.serde import SingleObjectSerde
from pipeline.in_memory import InMemoryService
from pipeline.llm.recorded import TAPE, RecordedAnswers
from pipeline.replay.diff import ConversationDiff, compare
from pipeline.replay.recording import read_conversation, select, state_as_of
from pipeline.runtime.service import Service

SETTLE_SECONDS = 60.0  # one input's handling, tool catalog wait and model call included


@dataclass(slots=True)
class Replayed:
    """What the replayed service emitted, what it dead-lettered (with the reason), and how
    long each input took to handle (seconds, in the order of the inputs)."""

    outputs: list[Event] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


async def run_in_memory(
    service: Service,
    inputs: Sequence[Event],
    *,
    state: Sequence[tuple[str, str, bytes]] = (),
    settle_seconds: float = SETTLE_SECONDS,
    answers: RecordedAnswers | None = None,
) -> Replayed:
    """Feed ``inputs`` (their metadata kept) through ``service`` in memory, in order.

    ``state`` holds (changelog, key, value) records the stores restore before the first
    input; ``answers``, the model's recorded answers a ``recorded`` provider gives (each
    input's own while it is handled). Returns the events the service emitted in answer
    to ``inputs``.
    """
    harness = InMemoryService(service)
    for changelog, key, value in state:
        harness.broker.append(harness.settings.topic(changelog), key, value)
    wanted = {e.metadata.event_id_text for e in inputs}
    token = TAPE.set(answers)  # before the service starts: its workers see it
    seconds: list[float] = []
    try:
        async with harness:
            for event in inputs:
                if answers is not None:
                    answers.current = event.metadata.event_id_text
                started = time.perf_counter()
                await harness.send_event(event)
                await harness.settle(settle_seconds)
                seconds.append(time.perf_counter() - started)
    finally:
        TAPE.reset(token)
    outputs = [
        event
        for event in harness.outputs()
        if event.metadata.producer == service.name and str(event.metadata.causation_id) in wanted
    ]
    dead = [
        f"{d['event_type']} at offset {d['source_offset']}: {d['error_type']}: {d['error_message']}"
        for d in harness.dead_letters()
    ]
    return Replayed(outputs, dead, seconds)


async def replay_conversation(
    settings: Settings,
    serde: SingleObjectSerde,
    load: Callable[[], Service],
    conversation_id: str,
    *,
    since: datetime | None = None,
    settle_seconds: float = SETTLE_SECONDS,
    recorded_answers: bool = False,
) -> ConversationDiff:
    """Replay one recorded conversation through a fresh service from ``load`` and compare.

    With ``recorded_answers`` a ``recorded`` provider (``PIPELINE_LLM__PROVIDER=recorded``
    in the service's settings) answers each model call as the model answered it then.
    From the beginning the state starts empty and builds up from the replayed inputs;
    with ``since`` only the inputs from then on are replayed, on the state the changelog
    recorded before that moment.
    """
    events = read_conversation(settings, serde, conversation_id)
    service = load()
    recording = select(conversation_id, events, service, since)
    state = state_as_of(settings, service, conversation_id, since) if since else []
    answers = RecordedAnswers.from_outputs(recording.outputs) if recorded_answers else None
    replayed = await run_in_memory(
        service, recording.inputs, state=state, settle_seconds=settle_seconds, answers=answers
    )
    return compare(
        conversation_id,
        recording.inputs,
        recording.outputs,
        replayed.outputs,
        replayed.dead_letters,
    )

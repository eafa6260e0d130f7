"""What the agent did, judged from outside: tool executions, model calls and replies.

:func:`compare` takes what a run asked for (one refund per conversation, each through one
tool), what the outside world saw (the stand-in model's request log, the tools' ledger of
executions), what the topics hold (``tool_called``, ``tool_result``, ``response_ready``) and
when the kills came, and counts:

- per tool, executions beyond one per logical call (a conversation's one tool call, under
  whatever call ids repeats gave it) and, for a tool that deduplicates by idempotency key,
  effects beyond one (executions that were not deduplicated); how many of the repeats came
  under a new call id; calls reported "outcome unknown", split by whether the tool ran
  (never, once);
- model calls repeated per logical step (the tool step, the final step), and how many of
  those repeat a call that was in flight at a kill of the agent: the earlier call started
  before the kill and answered less than ``window`` seconds before it, or after it (its
  completion may not have been recorded); and how many calls were in flight at the kills in
  all (the most a recovery may repeat);
- replies missing and duplicated per conversation, by content and by event id.

:meth:`ActionsComparison.problems` says which figures break the promise of durable actions
(the issue's acceptance): no effect twice for keyed and at-most-once tools, model calls
repeated only when in flight at a kill, every conversation answered once, and under SIGTERM
no repeat at all.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tests.chaos.chaos_check import EXACTLY_ONCE
from tests.chaos.model_stand_in import FINAL_STEP, TOOL_STEP, ModelRequest
from tests.chaos.side_effects import Execution

SIGKILL, SIGTERM = "SIGKILL", "SIGTERM"
AGENT, TOOLS = "agent", "tools"
KEYED, AT_MOST_ONCE, IDEMPOTENT = "keyed", "at_most_once", "idempotent"
IN_FLIGHT_WINDOW_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Asked:
    """What one conversation asked for: a refund of ``order_id`` through ``tool``."""

    conversation: str
    tool: str
    order_id: str


@dataclass(frozen=True, slots=True)
class ToolCalled:
    """A ``tool_called`` event as read back."""

    conversation: str
    call_id: str
    tool: str
    event_id: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A ``tool_result`` event as read back."""

    conversation: str
    call_id: str
    tool: str
    status: str
    error: str | None
    event_id: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A ``response_ready`` event as read back."""

    conversation: str
    text: str
    event_id: str


@dataclass(frozen=True, slots=True)
class Kill:
    """One signal the harness sent: to which service, which signal, when (wall clock)."""

    target: str
    signal: str
    at: float


def is_outcome_unknown(status: str, error: str | None) -> bool:
    """Whether a tool_result says the call's outcome is unknown (an at-most-once call that
    may or may not have run), by its status or its error."""
    said = f"{status} {error or ''}".lower()
    return status == "unknown" or "outcome unknown" in said or "uncertain" in said


@dataclass
class ToolFigures:
    """One tool's executions against its logical calls."""

    tool: str
    guarantee: str
    logical_calls: int = 0
    executions: int = 0
    executions_beyond_one: int = 0
    effects_beyond_one: int = 0  # executions beyond one that were not deduplicated
    beyond_one_under_new_call_id: int = 0
    deduplicated: int = 0
    never_run: int = 0
    outcome_unknown: int = 0
    unknown_not_run: int = 0
    unknown_run_once: int = 0
    failed_results: int = 0  # tool_results reporting another failure (error, timeout)

    @property
    def repeated(self) -> int:
        """What breaks the tool's guarantee: effects beyond one for a keyed tool (a
        deduplicated execution changes nothing), executions beyond one otherwise."""
        return self.effects_beyond_one if self.guarantee == KEYED else self.executions_beyond_one

    def line(self) -> str:
        return (
            f"{self.tool} ({self.guarantee}): {self.logical_calls} calls, "
            f"{self.executions} executions, {self.executions_beyond_one} beyond one per call "
            f"({self.beyond_one_under_new_call_id} under a new call id), effects beyond one "
            f"{self.effects_beyond_one} ({self.deduplicated} deduplicated); outcome unknown "
            f"{self.outcome_unknown} (run never {self.unknown_not_run}, once "
            f"{self.unknown_run_once}); never run {self.never_run}; other failures reported "
            f"{self.failed_results}"
        )


@dataclass
class ModelFigures:
    """Model calls against logical steps."""

    requests: int = 0
    steps: int = 0
    tool_step_repeats: int = 0
    final_step_repeats: int = 0
    tool_step_repeats_in_flight: int = 0
    final_step_repeats_in_flight: int = 0
    in_flight_at_kills: int = 0  # calls in flight at a kill of the agent: the bound
    tools_not_offered: int = 0  # tool steps whose tool the agent did not offer

    @property
    def repeats(self) -> int:
        return self.tool_step_repeats + self.final_step_repeats

    @property
    def repeats_in_flight(self) -> int:
        return self.tool_step_repeats_in_flight + self.final_step_repeats_in_flight

    @property
    def repeats_not_in_flight(self) -> int:
        """Repeats of a call whose completion had been answered well before any kill."""
        return self.repeats - self.repeats_in_flight

    def line(self) -> str:
        return (
            f"model: {self.requests} requests for {self.steps} steps; repeated "
            f"{self.tool_step_repeats} tool steps / {self.final_step_repeats} final steps, "
            f"of which in flight at a kill {self.tool_step_repeats_in_flight} / "
            f"{self.final_step_repeats_in_flight}; calls in flight at the kills "
            f"{self.in_flight_at_kills}; tool asked for but not offered "
            f"{self.tools_not_offered}"
        )


@dataclass
class ReplyFigures:
    """Replies against the conversations asked."""

    conversations: int = 0
    replies: int = 0
    missing: int = 0
    duplicates: int = 0  # answers beyond one per conversation (by content)
    duplicates_same_text: int = 0
    duplicate_ids: int = 0  # replies repeating an earlier one's event id
    duplicates_with_another_id: int = 0  # a conversation's answers under ids beyond one
    unexpected: int = 0  # replies that answer no conversation asked (an apology, say)

    def line(self) -> str:
        return (
            f"replies: {self.replies} for {self.conversations} conversations; missing "
            f"{self.missing}; duplicated {self.duplicates} by content "
            f"({self.duplicates_same_text} with the same text, "
            f"{self.duplicates_with_another_id} under another event id), "
            f"{self.duplicate_ids} by event id; unexpected {self.unexpected}"
        )


@dataclass
class ActionsComparison:
    """The figures of one run; :meth:`problems` says which break the promise."""

    tools: dict[str, ToolFigures] = field(default_factory=dict)
    model: ModelFigures = field(default_factory=ModelFigures)
    replies: ReplyFigures = field(default_factory=ReplyFigures)
    tool_calls: int = 0
    tool_results: int = 0
    kills: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def executions_beyond_one(self) -> int:
        """Tool executions beyond one per logical call, all tools."""
        return sum(t.executions_beyond_one for t in self.tools.values())

    @property
    def repeated_effects(self) -> int:
        """Repeats that break a tool's guarantee, all tools (see ToolFigures.repeated)."""
        return sum(t.repeated for t in self.tools.values())

    @property
    def beyond_one_under_new_call_id(self) -> int:
        return sum(t.beyond_one_under_new_call_id for t in self.tools.values())

    def problems(self, guarantee: str, signal: str = SIGKILL) -> list[str]:
        """What breaks durable actions in ``guarantee`` mode under ``signal`` (empty when
        the run kept them). A reply repeated under its own event id is allowed at least
        once (delivery drops it by id), not exactly once."""
        found = []
        for figures in self.tools.values():
            if figures.guarantee in (KEYED, AT_MOST_ONCE) and figures.repeated:
                what = "effects" if figures.guarantee == KEYED else "executions"
                found.append(f"{figures.tool}: {what} beyond one={figures.repeated}")
            # A call may stay unrun only when its outcome was reported unknown (at most once).
            if figures.never_run > figures.unknown_not_run:
                found.append(
                    f"{figures.tool}: calls never run={figures.never_run - figures.unknown_not_run}"
                )
        model = self.model
        if model.repeats_not_in_flight:
            found.append(f"model repeats not in flight at a kill={model.repeats_not_in_flight}")
        if model.repeats > model.in_flight_at_kills:
            found.append(
                f"model calls repeated={model.repeats} > in flight at the kills="
                f"{model.in_flight_at_kills}"
            )
        replies = self.replies
        names = ["missing", "duplicates_with_another_id", "unexpected"]
        if guarantee == EXACTLY_ONCE:
            names += ["duplicates", "duplicate_ids"]
        for name in names:
            if getattr(replies, name):
                found.append(f"replies {name}={getattr(replies, name)}")
        if signal == SIGTERM:
            if model.repeats:
                found.append(f"model calls repeated under SIGTERM={model.repeats}")
            for figures in self.tools.values():
                if figures.executions_beyond_one:
                    found.append(
                        f"{figures.tool}: executions beyond one under SIGTERM="
                        f"{figures.executions_beyond_one}"
                    )
        return found

    def lines(self) -> list[str]:
        return [
            *(figures.line() for figures in self.tools.values()),
            f"tool_called {self.tool_calls}, tool_result {self.tool_results}",
            self.model.line(),
            self.replies.line(),
        ]


def compare(
    asked: Iterable[Asked],
    model_requests: Iterable[ModelRequest],
    executions: Iterable[Execution],
    tool_calls: Iterable[ToolCalled],
    tool_results: Iterable[ToolResult],
    replies: Iterable[Reply],
    kills: Iterable[Kill],
    guarantees: Mapping[str, str],
    *,
    window: float = IN_FLIGHT_WINDOW_SECONDS,
) -> ActionsComparison:
    """Count a run's repeats and misses (see the module's docstring). ``guarantees`` maps
    each tool to ``keyed``, ``at_most_once`` or ``idempotent``."""
    result = ActionsComparison()
    wanted = {a.conversation: a for a in asked}
    kill_list = list(kills)
    result.kills = len(kill_list)
    called = list(tool_calls)
    reported = list(tool_results)
    result.tool_calls, result.tool_results = len(called), len(reported)
    _count_tools(result, wanted, list(executions), called, reported, guarantees)
    agent_kills = [k.at for k in kill_list if k.target == AGENT]
    _count_model(result, list(model_requests), agent_kills, window)
    _count_replies(result, wanted, replies)
    return result


def _count_tools(
    result: ActionsComparison,
    wanted: Mapping[str, Asked],
    executions: list[Execution],
    called: list[ToolCalled],
    reported: list[ToolResult],
    guarantees: Mapping[str, str],
) -> None:
    for tool, guarantee in guarantees.items():
        result.tools[tool] = ToolFigures(tool, guarantee)
    runs: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for execution in executions:
        runs[(execution.conversation, execution.tool)].append(execution)
        if execution.tool not in result.tools:
            result.tools[execution.tool] = ToolFigures(execution.tool, IDEMPOTENT)
    call_ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for call in called:
        call_ids[(call.conversation, call.tool)].add(call.call_id)
    unknown: dict[tuple[str, str], int] = defaultdict(int)
    for answer in reported:
        figures = result.tools.get(answer.tool)
        if figures is None:
            continue
        if is_outcome_unknown(answer.status, answer.error):
            unknown[(answer.conversation, answer.tool)] += 1
            figures.outcome_unknown += 1
        elif answer.status != "ok":
            figures.failed_results += 1
            _example(result, f"{answer.tool} failed for {answer.conversation}: {answer.error}")
    logical = {(a.conversation, a.tool) for a in wanted.values()} | runs.keys()
    for conversation, tool in sorted(logical):
        figures = result.tools.setdefault(tool, ToolFigures(tool, IDEMPOTENT))
        done = runs.get((conversation, tool), [])
        figures.logical_calls += 1
        figures.executions += len(done)
        figures.executions_beyond_one += max(0, len(done) - 1)
        effects = sum(1 for e in done if not e.deduplicated)
        figures.deduplicated += len(done) - effects
        figures.effects_beyond_one += max(0, effects - 1)
        figures.beyond_one_under_new_call_id += _under_new_call_id(
            done, call_ids.get((conversation, tool), set())
        )
        if not done:
            figures.never_run += 1
        if unknown.get((conversation, tool)):
            if not done:
                figures.unknown_not_run += 1
            elif len(done) == 1:
                figures.unknown_run_once += 1
        if len(done) > 1:
            _example(result, f"{tool} ran {len(done)}x ({effects} took effect) for {conversation}")


def _under_new_call_id(done: list[Execution], issued: set[str]) -> int:
    """Executions beyond the first that came under a call id not seen before in their
    logical call. A tool that was not given its call id cannot say: then the call ids the
    agent issued (``tool_called``) bound it."""
    if len(done) < 2:
        return 0
    if all(e.call_id is not None for e in done):
        return len({e.call_id for e in done}) - 1
    return min(len(done), max(1, len(issued))) - 1


def _count_model(
    result: ActionsComparison,
    requests: list[ModelRequest],
    agent_kills: list[float],
    window: float,
) -> None:
    figures = result.model
    figures.requests = len(requests)

    def in_flight(request: ModelRequest) -> bool:
        return any(request.start < kill and request.end > kill - window for kill in agent_kills)

    by_step: dict[str, list[ModelRequest]] = defaultdict(list)
    for request in requests:
        if request.step in (TOOL_STEP, FINAL_STEP):
            by_step[request.fingerprint].append(request)
        if request.step == TOOL_STEP and not request.offered:
            figures.tools_not_offered += 1
        if in_flight(request):
            figures.in_flight_at_kills += 1
    figures.steps = len(by_step)
    for calls in by_step.values():
        calls.sort(key=lambda r: r.start)
        for earlier, repeat in itertools.pairwise(calls):
            explained = in_flight(earlier)
            if repeat.step == TOOL_STEP:
                figures.tool_step_repeats += 1
                figures.tool_step_repeats_in_flight += explained
            else:
                figures.final_step_repeats += 1
                figures.final_step_repeats_in_flight += explained
            if not explained:
                _example(
                    result,
                    f"model {repeat.step} step of {repeat.conversation} called again "
                    f"{repeat.start - earlier.end:.1f}s after an answer no kill interrupted",
                )


def _count_replies(
    result: ActionsComparison, wanted: Mapping[str, Asked], replies: Iterable[Reply]
) -> None:
    figures = result.replies
    figures.conversations = len(wanted)
    answers: dict[str, set[str]] = defaultdict(set)
    count: dict[str, int] = defaultdict(int)
    texts: set[tuple[str, str]] = set()
    ids: set[str] = set()
    for reply in replies:
        figures.replies += 1
        if reply.event_id in ids:
            figures.duplicate_ids += 1
        ids.add(reply.event_id)
        if (reply.conversation, reply.text) in texts:
            figures.duplicates_same_text += 1
        texts.add((reply.conversation, reply.text))
        if reply.conversation not in wanted or not _names(reply.text, reply.conversation):
            figures.unexpected += 1
            _example(result, f"unexpected reply in {reply.conversation}: {reply.text[:80]!r}")
            continue
        answers[reply.conversation].add(reply.event_id)
        count[reply.conversation] += 1
    figures.duplicates = sum(n - 1 for n in count.values())
    figures.duplicates_with_another_id = sum(len(found) - 1 for found in answers.values())
    missing = sorted(set(wanted) - answers.keys())
    figures.missing = len(missing)
    for conversation in missing[:5]:
        _example(result, f"no reply in {conversation}")


def _names(text: str, conversation: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(conversation)}(?![\w-])", text) is not None


def _example(result: ActionsComparison, text: str) -> None:
    if len(result.examples) < 10:
        result.examples.append(text)

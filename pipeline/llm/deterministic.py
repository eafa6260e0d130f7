"""The default provider: rules instead of a model, so the pipeline runs with no network.

It greets, recognises arithmetic ("what is 12*7?") and asks the ``calculator`` tool, asks
``current_time`` for the time and ``knowledge_lookup`` for "look up ...", answers from the
conversation's context facts, remembers what the user said, and turns tool results into
answers ("12*7 = 84"). A tool call whose outcome is unknown is said to be checked by a
person; when the system prompt carries an operator's decision on one (the agent's note,
:func:`pipeline.services.agent.uncertain.outcome_note`), the answer says what became of
the action. Same request, same completion: tests can rely on it.

Any offered tool can be called by name with the explicit form (see :func:`explicit_tool_call`)::

    /tool weather {"city": "Paris"}

so a custom tool can be driven through the whole chain without a model.

With ``words_per_second`` (``PIPELINE_LLM__DETERMINISTIC_WORDS_PER_SECOND``) it streams
(:meth:`DeterministicProvider.stream`): the answer's text is written word by word at that
rate, as a model writing it would, so previews can be tried and tested without a key.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema

from pipeline.llm.base import ChatMessage, ChatRequest, Completion, ToolCall, ToolSpec
from pipeline.llm.streaming import TextSink

TOOL_COMMAND = "/tool"

# Every pattern here runs in linear time on any text: the user writes it. Quantifiers
# that the rest of a pattern can never take back from are possessive (``++``, ``*+``),
# and a match may only start where a run of digits, spaces or parentheses starts, so a
# long run is read once instead of once from each of its characters.
_NUMBER = r"-?+\d++(?:\.\d++)?+"
_OPERATOR = r"(?:\*\*|[-+*/%^\u00d7\u00f7xX])"
_START = r"(?:(?<!\()\(++\s*+|(?<![\s(])\s++|(?<!\d))"
_ARITHMETIC = re.compile(
    rf"{_START}{_NUMBER}(?:\s*+{_OPERATOR}\s*+\(*+\s*+{_NUMBER}\s*+\)*+)+",
)
# Arithmetic is looked for in this much of a message at most (the calculator takes it).
MAX_ARITHMETIC_CHARS = 4096
_ASKS_TO_COMPUTE = re.compile(
    r"\b(what\s+is|what's|whats|calculate|compute|how\s+much\s+is|solve|equals?)\b|=",
    re.IGNORECASE,
)
_TIME = re.compile(
    r"\b(what\s+time|current\s+time|time\s+is\s+it|what\s+day|what\s+date|today's\s+date)\b",
    re.IGNORECASE,
)
_WHAT_DID_I_SAY = re.compile(r"\bwhat\s+did\s+i\s+(say|write|ask)\b", re.IGNORECASE)
_WHAT_DO_YOU_KNOW = re.compile(r"\bwhat\s+do\s+you\s+know\b(?!\s+about\s+\w)", re.IGNORECASE)
_LOOKUP = re.compile(
    r"^\s*+(?:please\s++)?(?:look\s*+up|search(?:\s++for)?|tell\s++me\s++about|"
    r"what\s++do\s++you\s++know\s++about)\s++"
    r"(?P<query>[^\n](?:[^\n]*(?<![\s?.!]))?)[\s?.!]*+$",
    re.IGNORECASE,
)
# The agent's note on an operator's decision about a tool call whose outcome was unknown:
# its first line ("Operator ada checked the tool call refund (call_1), whose outcome was
# unknown, and marked it done.") and the line with what the operator found. Read line by
# line with string methods: the system prompt carries what users wrote during a handoff.
_DECIDED_START = "Operator "
_DECIDED_TOOL = " checked the tool call "
_DECIDED_ENDINGS = {
    outcome: f", whose outcome was unknown, and marked it {outcome}."
    for outcome in ("done", "failed")
}
_OPERATOR_FOUND = "What the operator found: "
_WORD = re.compile(r"\s*\S+\s*")
_GREETING = re.compile(
    r"^\s*(hi|hello|hey|hiya|howdy|good\s+(morning|afternoon|evening)|greetings)\b",
    re.IGNORECASE,
)


class DeterministicProvider:
    """Rule-based completions; no network, no randomness."""

    name = "deterministic"
    model = "rules-v1"
    # The same request always gets the same answer, for free: nothing to journal.
    deterministic = True

    def __init__(self, words_per_second: float | None = None) -> None:
        self.words_per_second = words_per_second
        self.can_stream = words_per_second is not None

    async def complete(self, request: ChatRequest) -> Completion:
        return decide(request)

    async def stream(self, request: ChatRequest, sink: TextSink) -> Completion:
        """The same completion, its text written to ``sink`` a word at a time (the first
        at once, then one per ``1 / words_per_second`` seconds)."""
        completion = decide(request)
        pause = 1.0 / self.words_per_second if self.words_per_second else 0.0
        for index, word in enumerate(_WORD.findall(completion.text or "")):
            if index and pause:
                await asyncio.sleep(pause)
            sink.write(word)
        return completion

    async def aclose(self) -> None:
        return None


def decide(request: ChatRequest) -> Completion:
    """The completion for ``request``: answer tool results, or handle the last user text."""
    messages = request.messages
    if messages and messages[-1].role == "tool":
        return Completion(text=_answer_tool_results(messages))
    decided = _answer_decisions(request.system)
    if decided is not None:
        return Completion(text=decided)
    user_texts = [m.content or "" for m in messages if m.role == "user"]
    if not user_texts:
        return Completion(text="Hello! How can I help you today?")
    text = user_texts[-1]
    explicit = explicit_tool_call(text, request.tools)
    if explicit is not None:
        return explicit
    offered = {t.name for t in request.tools}

    expression = arithmetic_expression(text)
    if expression is not None:
        if "calculator" not in offered:
            return Completion(text="I cannot calculate right now: the calculator is not available.")
        return _call("calculator", {"expression": expression}, text)
    if _TIME.search(text):
        if "current_time" not in offered:
            return Completion(text="I cannot tell the time right now: no clock is available.")
        return _call("current_time", {}, text)
    if _WHAT_DID_I_SAY.search(text):
        if len(user_texts) < 2:
            return Completion(text="This is the first thing you said to me.")
        return Completion(text=f'You said: "{user_texts[-2]}"')
    from_facts = _answer_from_facts(text, request.facts)
    if from_facts is not None:
        return Completion(text=from_facts)
    lookup = _LOOKUP.match(text)
    if lookup is not None and "knowledge_lookup" in offered:
        return _call("knowledge_lookup", {"query": lookup["query"]}, text)
    if _GREETING.match(text):
        name = request.facts.get("name")
        who = f", {name}" if name else ""
        return Completion(text=f"Hello{who}! How can I help you today?")
    return Completion(text=f"You said: {text}")


def explicit_tool_call(text: str, tools: Sequence[ToolSpec]) -> Completion | None:
    """``/tool NAME {JSON arguments}``: a call of an offered tool, its arguments checked
    against the tool's JSON Schema; None when ``text`` is not that form.

    The arguments may be left out (``/tool current_time``: ``{}``). An unknown tool,
    arguments that are not a JSON object, or arguments the schema refuses are answered
    with a text saying what was wrong, every schema violation at once.
    """
    stripped = text.strip()
    if stripped != TOOL_COMMAND and not stripped.startswith(TOOL_COMMAND + " "):
        return None
    offered = {t.name: t for t in tools}
    names = ", ".join(sorted(offered)) or "none"
    parts = stripped[len(TOOL_COMMAND) :].strip().split(None, 1)
    if not parts:
        return Completion(
            text=f'Usage: /tool NAME {{"argument": "value"}}. Offered tools: {names}.'
        )
    name, raw = parts[0], (parts[1] if len(parts) > 1 else "{}")
    spec = offered.get(name)
    if spec is None:
        return Completion(text=f"There is no tool named {name!r} to call. Offered tools: {names}.")
    try:
        arguments = json.loads(raw)
    except ValueError as exc:
        return Completion(text=f"The arguments of {name} are not valid JSON: {exc}.")
    if not isinstance(arguments, dict):
        return Completion(text=f"The arguments of {name} must be a JSON object.")
    try:
        problems = spec.argument_problems(arguments)
    except jsonschema.SchemaError as exc:
        return Completion(text=f"The tool {name} has an invalid argument schema: {exc.message}.")
    if problems:
        return Completion(
            text=f"The arguments of {name} do not fit its schema: {'; '.join(problems)}."
        )
    return _call(name, arguments, text)


def arithmetic_expression(text: str) -> str | None:
    """The arithmetic in ``text`` as the calculator takes it ("12*7"), if it asks for one.

    Only the first :data:`MAX_ARITHMETIC_CHARS` characters are read.
    """
    text = text[:MAX_ARITHMETIC_CHARS]
    matches = _ARITHMETIC.findall(text)
    if not matches:
        return None
    expression = max(matches, key=len)
    alone = text.strip().rstrip("?!.= ") == expression.strip()
    if not alone and not _ASKS_TO_COMPUTE.search(text):
        return None  # "call 555-1234" is not a question about arithmetic
    expression = re.sub(r"\s+", "", expression)
    expression = expression.replace("\u00d7", "*").replace("x", "*").replace("X", "*")
    expression = expression.replace("\u00f7", "/").replace("^", "**")
    return _balance(expression)


def _balance(expression: str) -> str:
    """Drop parentheses the match caught on one side only: "(12*7" -> "12*7"."""
    opened, closed = expression.count("("), expression.count(")")
    leading = len(expression) - len(expression.lstrip("("))
    drop_left = min(leading, max(0, opened - closed))
    expression = expression[drop_left:]
    opened -= drop_left
    trailing = len(expression) - len(expression.rstrip(")"))
    drop_right = min(trailing, max(0, closed - opened))
    return expression[: len(expression) - drop_right]


def _call(tool: str, arguments: Mapping[str, Any], text: str) -> Completion:
    call_id = "call_" + uuid.uuid5(uuid.NAMESPACE_URL, f"{tool}:{text}").hex[:16]
    return Completion(tool_calls=(ToolCall(call_id, tool, dict(arguments)),))


def _answer_from_facts(text: str, facts: Mapping[str, str]) -> str | None:
    if not facts:
        return None
    if _WHAT_DO_YOU_KNOW.search(text):
        known = "; ".join(f"{_phrase(k)}: {v}" for k, v in sorted(facts.items()))
        return f"Here is what I know: {known}."
    lowered = text.lower()
    found = [
        f"Your {_phrase(k)} is {v}."
        for k, v in sorted(facts.items())
        if _phrase(k) in lowered or k.lower() in lowered
    ]
    return " ".join(found) if found else None


def _phrase(key: str) -> str:
    return key.replace("_", " ").replace("-", " ").strip().lower()


def _answer_decisions(system: str) -> str | None:
    """What became of the actions an operator decided, as the system prompt says; None
    when it says nothing of the kind."""
    answers: list[str] = []
    for line in system.splitlines():
        if line.startswith(_OPERATOR_FOUND) and answers:
            found = line.removeprefix(_OPERATOR_FOUND).strip()
            if found:
                answers[-1] += f" What they found: {found}"
            continue
        decided = _decision(line)
        if decided is None:
            continue
        tool, outcome = decided
        went = "it was done." if outcome == "done" else "it did not go through."
        answers.append(
            f"An update on the {tool} action I could not confirm: a person checked, and {went}"
        )
    return " ".join(answers) if answers else None


def _decision(line: str) -> tuple[str, str] | None:
    """The tool and outcome of a decision's first line, or None for any other line."""
    if not line.startswith(_DECIDED_START):
        return None
    outcome = next((o for o, end in _DECIDED_ENDINGS.items() if line.endswith(end)), None)
    _, tool_named, rest = line.partition(_DECIDED_TOOL)
    if outcome is None or not tool_named or not rest.strip():
        return None
    return rest.split()[0], outcome


def _answer_tool_results(messages: Sequence[ChatMessage]) -> str:
    calls: dict[str, ToolCall] = {}
    results: list[ChatMessage] = []
    for message in messages:
        if message.role == "assistant":
            calls.update((c.id, c) for c in message.tool_calls)
        if message.role == "tool":
            results.append(message)
        else:
            results = []
    return " ".join(_answer_one(r, calls.get(r.tool_call_id or "")) for r in results)


def _answer_one(result: ChatMessage, call: ToolCall | None) -> str:
    tool = result.name or (call.name if call else "tool")
    try:
        value: Any = json.loads(result.content or "null")
    except ValueError:
        value = result.content
    if isinstance(value, dict) and value.get("status") == "unknown" and "error" in value:
        return (
            f"I could not confirm whether the {tool} action went through ({value['error']}). "
            "A person will check what happened."
        )
    if isinstance(value, dict) and "error" in value and "status" in value:
        return f"Sorry, the {tool} tool failed ({value['status']}): {value['error']}."
    if tool == "calculator" and isinstance(value, dict) and "value" in value:
        expression = call.arguments.get("expression", "that") if call else "that"
        return f"{expression} = {_number(value['value'])}"
    if tool == "current_time" and isinstance(value, dict) and "iso" in value:
        return f"It is {value['iso']}."
    if tool == "knowledge_lookup" and isinstance(value, dict):
        answer = value.get("answer")
        query = call.arguments.get("query", "that") if call else "that"
        return str(answer) if answer else f"I found nothing about {query}."
    return f"The {tool} tool returned {json.dumps(value, sort_keys=True)}."


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

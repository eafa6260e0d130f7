"""The deterministic provider's decisions: greet, call tools, answer from facts and results."""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config.sections import ToolsSettings
from pipeline.llm import (
    ChatMessage,
    ChatRequest,
    Completion,
    DeterministicProvider,
    ToolCall,
    ToolSpec,
)
from pipeline.llm.deterministic import (
    _ARITHMETIC,
    _LOOKUP,
    MAX_ARITHMETIC_CHARS,
    arithmetic_expression,
    decide,
)
from pipeline.toolbox import builtin_tools
from pipeline.toolbox.tool_offer import StaticOffer

# What the tools service serves and advertises by default.
BUILT_IN_TOOLS = StaticOffer.of(builtin_tools(ToolsSettings())).specs


def ask(*texts: str, facts: dict[str, str] | None = None, tools: bool = True) -> ChatRequest:
    messages = []
    for i, text in enumerate(texts):
        messages.append(ChatMessage("user", text))
        if i < len(texts) - 1:
            messages.append(ChatMessage("assistant", "ok"))
    return ChatRequest(tuple(messages), facts=facts or {}, tools=BUILT_IN_TOOLS if tools else ())


@pytest.mark.parametrize(
    ("text", "expression"),
    [
        ("what is 12*7?", "12*7"),
        ("What's 3 + 4 * (2 - 1)?", "3+4*(2-1)"),
        ("calculate (1.5 + 2) / 7", "(1.5+2)/7"),
        ("12 x 7", "12*7"),
        ("how much is 2^10", "2**10"),
        ("100-1", "100-1"),
    ],
)
def test_arithmetic_is_recognised(text: str, expression: str) -> None:
    assert arithmetic_expression(text) == expression


@pytest.mark.parametrize("text", ["call me at 555-1234 please", "hello", "what is love?"])
def test_text_that_is_not_arithmetic(text: str) -> None:
    assert arithmetic_expression(text) is None


async def test_arithmetic_asks_the_calculator() -> None:
    completion = await DeterministicProvider().complete(ask("what is 12*7?"))
    assert completion.text is None
    (call,) = completion.tool_calls
    assert call.name == "calculator"
    assert call.arguments == {"expression": "12*7"}
    assert call.id.startswith("call_")


def test_arithmetic_without_a_calculator_says_so() -> None:
    completion = decide(ask("what is 12*7?", tools=False))
    assert not completion.tool_calls
    assert "calculator" in (completion.text or "")


def test_a_calculator_result_becomes_the_answer() -> None:
    call = ToolCall("call_1", "calculator", {"expression": "12*7"})
    request = ChatRequest(
        (
            ChatMessage("user", "what is 12*7?"),
            ChatMessage("assistant", None, tool_calls=(call,)),
            ChatMessage(
                "tool", json.dumps({"value": 84}), tool_call_id="call_1", name="calculator"
            ),
        ),
        tools=BUILT_IN_TOOLS,
    )
    assert decide(request).text == "12*7 = 84"


def test_a_failed_tool_is_explained() -> None:
    call = ToolCall("c", "calculator", {"expression": "1/0"})
    failure = json.dumps({"status": "error", "error": "division by zero"})
    request = ChatRequest(
        (
            ChatMessage("user", "what is 1/0?"),
            ChatMessage("assistant", None, tool_calls=(call,)),
            ChatMessage("tool", failure, tool_call_id="c", name="calculator"),
        )
    )
    text = decide(request).text or ""
    assert "failed" in text and "division by zero" in text


def test_an_unknown_outcome_is_left_to_a_person_to_check() -> None:
    call = ToolCall("c", "refund", {"order": "1234"})
    unknown = json.dumps({"status": "unknown", "error": "outcome unknown: the service stopped"})
    request = ChatRequest(
        (
            ChatMessage("user", "refund order 1234"),
            ChatMessage("assistant", None, tool_calls=(call,)),
            ChatMessage("tool", unknown, tool_call_id="c", name="refund"),
        )
    )
    assert decide(request).text == (
        "I could not confirm whether the refund action went through (outcome unknown: the "
        "service stopped). A person will check what happened."
    )


DECIDED_DONE = (
    "Operator ada checked the tool call refund (call_1), whose outcome was unknown, and "
    "marked it done.\nThe action took effect: do not call the tool again for it.\n"
    "What the operator found: the shop shows the refund\nTell the user what became of it."
)
DECIDED_FAILED = (
    "Operator bob checked the tool call send_parcel (call_2), whose outcome was unknown, and "
    "marked it failed.\nThe action did not take effect."
)


def test_an_operators_decision_in_the_system_prompt_is_what_the_answer_says() -> None:
    # The user's last message would call the calculator: the decision comes first.
    history = (ChatMessage("user", "what is 12*7?"), ChatMessage("assistant", "12*7 = 84"))
    done = decide(ChatRequest(history, system=f"Be brief.\n\n{DECIDED_DONE}"))
    assert not done.tool_calls
    assert done.text == (
        "An update on the refund action I could not confirm: a person checked, and it was "
        "done. What they found: the shop shows the refund"
    )
    both = decide(ChatRequest(history, system=f"{DECIDED_DONE}\n\n{DECIDED_FAILED}"))
    assert both.text == (
        f"{done.text} An update on the send_parcel action I could not confirm: a person "
        "checked, and it did not go through."
    )
    # Only a line of that shape is a decision, not a mention of one.
    mention = f"- User: {DECIDED_DONE}"
    (call,) = decide(ChatRequest(history, system=mention, tools=BUILT_IN_TOOLS)).tool_calls
    assert call.name == "calculator"


def test_time_and_lookup_ask_their_tools() -> None:
    (time_call,) = decide(ask("what time is it?")).tool_calls
    assert (time_call.name, dict(time_call.arguments)) == ("current_time", {})
    (lookup,) = decide(ask("look up refund policy")).tool_calls
    assert (lookup.name, dict(lookup.arguments)) == ("knowledge_lookup", {"query": "refund policy"})


def test_time_and_lookup_results_are_answered() -> None:
    calls = (ToolCall("a", "current_time", {}), ToolCall("b", "knowledge_lookup", {"query": "x"}))
    request = ChatRequest(
        (
            ChatMessage("user", "?"),
            ChatMessage("assistant", None, tool_calls=calls),
            ChatMessage("tool", '{"iso": "2030-01-01T00:00:00Z"}', tool_call_id="a"),
            ChatMessage("tool", '{"answer": "Refunds take 5 days."}', tool_call_id="b"),
        )
    )
    assert decide(request).text == "It is 2030-01-01T00:00:00Z. Refunds take 5 days."


def test_greets_by_name_when_a_fact_says_it() -> None:
    assert decide(ask("hi there")).text == "Hello! How can I help you today?"
    assert (
        decide(ask("Hello", facts={"name": "Ada"})).text == "Hello, Ada! How can I help you today?"
    )


def test_answers_from_context_facts() -> None:
    facts = {"ticket_status": "resolved", "plan": "pro"}
    assert decide(ask("what is my ticket status?", facts=facts)).text == (
        "Your ticket status is resolved."
    )
    assert decide(ask("what do you know?", facts=facts)).text == (
        "Here is what I know: plan: pro; ticket status: resolved."
    )


def test_remembers_what_the_user_said() -> None:
    assert decide(ask("my order is 42", "what did I say?")).text == 'You said: "my order is 42"'
    assert decide(ask("what did I say?")).text == "This is the first thing you said to me."


def test_anything_else_is_acknowledged_with_its_text() -> None:
    assert decide(ask("turn 3")).text == "You said: turn 3"


def test_same_request_same_completion() -> None:
    assert decide(ask("what is 2+2")) == decide(ask("what is 2+2"))


WEATHER = ToolSpec(
    "weather",
    "Today's weather for a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city"],
        "additionalProperties": False,
    },
)


def tool_form(text: str) -> Completion:
    return decide(ChatRequest((ChatMessage("user", text),), tools=(*BUILT_IN_TOOLS, WEATHER)))


def test_the_tool_form_calls_any_offered_tool_with_checked_arguments() -> None:
    (call,) = tool_form('/tool weather {"city": "Paris", "days": 2}').tool_calls
    assert (call.name, call.arguments) == ("weather", {"city": "Paris", "days": 2})
    (clock,) = tool_form("  /tool current_time  ").tool_calls
    assert (clock.name, clock.arguments) == ("current_time", {})
    # An ordinary message that mentions the form is not one.
    assert not tool_form("what does /toolbar do").tool_calls


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (
            '/tool weather {"days": 0, "town": "Paris"}',
            "The arguments of weather do not fit its schema: arguments: 'city' is a required "
            "property; arguments: Additional properties are not allowed ('town' was "
            "unexpected); days: 0 is less than the minimum of 1.",
        ),
        ("/tool weather {city: Paris}", "The arguments of weather are not valid JSON: "),
        ('/tool weather ["Paris"]', "The arguments of weather must be a JSON object."),
        (
            "/tool teleport {}",
            "There is no tool named 'teleport' to call. Offered tools: calculator, "
            "current_time, knowledge_lookup, weather.",
        ),
        ("/tool", 'Usage: /tool NAME {"argument": "value"}. Offered tools: calculator, '),
    ],
)
def test_the_tool_form_says_what_is_wrong_and_calls_nothing(text: str, answer: str) -> None:
    completion = tool_form(text)
    assert not completion.tool_calls
    assert completion.text is not None and completion.text.startswith(answer)


def test_the_tool_form_result_is_answered_for_any_tool() -> None:
    (call,) = tool_form('/tool weather {"city": "Paris"}').tool_calls
    result = ChatMessage("tool", '{"forecast": "sunny"}', tool_call_id=call.id, name="weather")
    messages = (ChatMessage("user", "x"), ChatMessage("assistant", None, (call,)), result)
    answer = decide(ChatRequest(messages, tools=(WEATHER,)))
    assert answer.text == 'The weather tool returned {"forecast": "sunny"}.'


# The patterns before they were made linear; the new ones must find the same things.
_OLD_NUMBER = r"-?\d+(?:\.\d+)?"
_OLD_OPERATOR = r"(?:\*\*|[-+*/%^\u00d7\u00f7xX])"
OLD_ARITHMETIC = re.compile(
    rf"\(*\s*{_OLD_NUMBER}(?:\s*{_OLD_OPERATOR}\s*\(*\s*{_OLD_NUMBER}\s*\)*)+"
)
OLD_LOOKUP = re.compile(
    r"^\s*(?:please\s+)?(?:look\s*up|search(?:\s+for)?|tell\s+me\s+about|"
    r"what\s+do\s+you\s+know\s+about)\s+(?P<query>.+?)[\s?.!]*$",
    re.IGNORECASE,
)


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(st.text(alphabet="0123456789.+-*/x()^%a= \t\u00d7", max_size=30))
def test_arithmetic_pattern_finds_what_the_quadratic_one_found(text: str) -> None:
    assert _ARITHMETIC.findall(text) == OLD_ARITHMETIC.findall(text)


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(
    st.sampled_from(["look up", "Lookup", "please search for", "search", "tell me  about"]),
    st.text(alphabet="ab ?.!\n\t", max_size=14),
)
def test_lookup_pattern_finds_what_the_quadratic_one_found(prefix: str, rest: str) -> None:
    old = OLD_LOOKUP.match(prefix + rest)
    new = _LOOKUP.match(prefix + rest)
    if old is not None and not old["query"].strip():
        assert new is None or new["query"].strip()  # a blank query is no longer looked up
    else:
        assert (old and old["query"]) == (new and new["query"])


@pytest.mark.parametrize(
    ("text", "expression"),
    [("((12*7", "12*7"), ("(1+2)*3))", "(1+2)*3"), ("what is ((1+2)*3", "(1+2)*3")],
)
def test_parentheses_caught_on_one_side_are_dropped(text: str, expression: str) -> None:
    assert arithmetic_expression(text) == expression


def test_arithmetic_reads_a_bounded_prefix() -> None:
    long = "what is 1+1? " + "blah " * MAX_ARITHMETIC_CHARS + "and 2*3"
    assert arithmetic_expression(long) == "1+1"


QUARTER_MIB = 256 * 1024
HOSTILE_TEXTS = {
    "digits": "1" * QUARTER_MIB,
    "digits after a question": "what is " + "1" * QUARTER_MIB,
    "spaces": "what is " + " " * QUARTER_MIB + "x",
    "parentheses": "(" * QUARTER_MIB + "1+1",
    "digit and space": "1 " * (QUARTER_MIB // 2),
    "dotted digits": "1." * (QUARTER_MIB // 2),
    "operators": "1+" * (QUARTER_MIB // 2) + "+",
    "lookup then spaces": "look up x" + " " * QUARTER_MIB + "\ny",
    "lookup then words": "look up " + "a " * (QUARTER_MIB // 2) + "\nb",
    "questions": "what is " * (QUARTER_MIB // 8),
    "plain words": "lorem ipsum " * (QUARTER_MIB // 12 + 1),
}


def test_a_quarter_mebibyte_system_prompt_is_read_within_a_second() -> None:
    # The system prompt carries what users and operators wrote during a handoff.
    hostile = "Operator " + "x checked the tool call y (" * (QUARTER_MIB // 26) + "\n"
    started = time.thread_time()
    completion = decide(ChatRequest((ChatMessage("user", "hello"),), system=hostile * 2))
    elapsed = time.thread_time() - started
    assert completion.text == "Hello! How can I help you today?"
    assert elapsed < 1.0, f"{elapsed:.2f}s of CPU"


@pytest.mark.parametrize("shape", sorted(HOSTILE_TEXTS))
def test_a_quarter_mebibyte_message_is_answered_within_a_second(shape: str) -> None:
    text = HOSTILE_TEXTS[shape]
    assert len(text) >= QUARTER_MIB
    # CPU time of this thread: other processes on the machine do not count against it.
    started = time.thread_time()
    completion = decide(ask("hello", text))
    elapsed = time.thread_time() - started
    assert completion.text is not None or completion.tool_calls
    # The quadratic patterns took minutes on these; linear ones take tens of milliseconds.
    assert elapsed < 1.0, f"{shape}: {elapsed:.2f}s of CPU"

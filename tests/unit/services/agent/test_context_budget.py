"""The model's context budget: a long conversation stays within it, its oldest messages
folded into a summary that keeps how it began (reported as history_summarized); a huge
tool result is cut with a note; the estimate of tokens; the summary's bounds."""

from __future__ import annotations

import json
from datetime import datetime

from pipeline.config.sections import AgentSettings, LLMSettings, package_version
from pipeline.events.model import utc_now
from pipeline.llm import ChatMessage, ChatRequest, Completion
from pipeline.llm.tokens import cut_to_tokens, estimate_tokens
from pipeline.services.agent import Conversation
from pipeline.services.agent.context_budget import ContextBudget, bounded_result
from pipeline.services.agent.summary import GAP, HEADING, fold
from tests.unit.services.agent.agent_support import ScriptedProvider, call
from tests.unit.services.agent.handler_support import Harness, message, tool_result

LLM = {"context_tokens": 6_000, "answer_reserve_tokens": 1_000}


class Recording(ScriptedProvider):
    """Answers every turn with a long text, recording the requests."""

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        if self.completions:
            return await super().complete(request)
        return Completion(text="Noted. " + "I will keep that in mind. " * 20)


async def test_two_hundred_long_turns_stay_within_the_budget_with_a_summary() -> None:
    provider = Recording()
    agent = await Harness(provider, llm=LLM, summary_max_tokens=600).start()
    budget = ContextBudget(LLMSettings(**LLM), AgentSettings(summary_max_tokens=600))
    summarized = []
    for turn in range(200):
        text = f"Fact {turn}: my order number is ORD-{turn:04d}. " + "Some detail. " * 40
        outputs = await agent.send(message(text))
        summarized += [e for e in outputs if e.type == "history_summarized"]
        assert [e.type for e in outputs if e.type != "history_summarized"] == ["response_ready"]
    assert len(provider.requests) == 200
    sizes = [budget.request_tokens(r) for r in provider.requests]
    assert max(sizes) <= budget.total == 5_000
    assert sizes[-1] > 2_500, "the budget is used, not cut to a fixed count"
    state = agent.state()
    summary = state["summary"]
    assert summary.startswith(HEADING)
    assert estimate_tokens(summary) <= 600
    # How the conversation began, what was folded last, and a mark for what was between.
    assert "Fact 0: my order number is ORD-0000" in summary
    assert GAP in summary.splitlines()
    newest_folded = int(summary.splitlines()[-1].split("Fact ")[1].split(":")[0])
    assert newest_folded > 150
    # Every message is in the history or was folded into the summary, none dropped silently.
    oldest_kept = state["history"][0]
    assert oldest_kept["role"] in ("user", "assistant")
    assert len(state["history"]) < 40
    # The model reads the summary in its system prompt.
    assert summary in provider.requests[-1].system
    # Each fold was reported, with the summary as it then stood.
    assert summarized
    last = summarized[-1]
    assert last["summary"] == summary
    assert last["folded_messages"] >= 1 and last["folded_tokens"] > 0
    assert 0 < last["budget_tokens"] < 5_000
    assert last.agent_version == package_version()
    assert sum(e["folded_messages"] for e in summarized) + len(state["history"]) == 400


async def test_a_short_conversation_is_not_folded() -> None:
    agent = await Harness(llm=LLM).start()
    for turn in range(5):
        outputs = await agent.send(message(f"hello {turn}"))
        assert [e.type for e in outputs] == ["response_ready"]
    assert agent.state()["summary"] is None
    assert len(agent.state()["history"]) == 10


async def test_a_tool_result_of_a_megabyte_is_cut_with_a_note() -> None:
    provider = ScriptedProvider(call("calculator", expression="1+1"), Completion(text="done"))
    agent = await Harness(provider, tool_result_max_tokens=2_000).start()
    (called,) = await agent.send(message("add"))
    huge = {"rows": ["x" * 1000] * 1000}  # about 1 MB of JSON
    size = len(json.dumps(huge))
    assert size > 1_000_000
    (answer,) = await agent.send(tool_result(called, huge))
    assert answer["text"] == "done"
    read = provider.requests[1].messages[-1]
    assert read.role == "tool"
    assert estimate_tokens(read.content or "") <= 2_000
    assert read.content is not None and read.content.startswith('{"rows": ["xxxx')
    assert f"The tool's result was cut: it had {size:,} characters" in read.content


def test_the_estimate_errs_on_the_high_side() -> None:
    english = "The quick brown fox jumps over the lazy dog. " * 10
    # cl100k and o200k count 10 tokens per sentence here (100 in all).
    assert 100 <= estimate_tokens(english) <= 125
    assert estimate_tokens("你好世界") == 4  # each character outside ASCII is a token
    assert estimate_tokens("") == 0
    text = "word " * 1000
    cut = cut_to_tokens(text, 100)
    assert estimate_tokens(cut) <= 100 < estimate_tokens(cut + "word ")
    assert bounded_result("small", 10) == "small"


def test_the_summary_keeps_its_start_and_its_latest_lines() -> None:
    summary = None
    for n in range(100):
        summary = fold(summary, [{"role": "user", "text": f"message {n} " + "x" * 40}], 300)
    assert summary is not None
    lines = summary.splitlines()
    assert lines[0] == HEADING
    assert lines[1].startswith("- user: message 0 ")
    assert lines[-1].startswith("- user: message 99 ")
    assert lines.count(GAP) == 1
    assert estimate_tokens(summary) <= 300


def test_a_history_over_the_window_is_folded_not_dropped() -> None:
    conversation = Conversation()
    conversation.remember("user", "my name is Ada", _at(), window=2)
    conversation.remember("assistant", "hello Ada", _at(), window=2)
    conversation.remember("user", "what is my name?", _at(), window=2)
    assert [h["text"] for h in conversation.history] == ["hello Ada", "what is my name?"]
    assert conversation.summary is not None
    assert "- user: my name is Ada" in conversation.summary
    assert Conversation.from_json(conversation.to_json()).summary == conversation.summary


def test_the_budget_counts_system_tools_and_messages() -> None:
    budget = ContextBudget(LLMSettings(**LLM), AgentSettings())
    small = ChatRequest(messages=(ChatMessage("user", "hi"),), system="be brief")
    large = ChatRequest(messages=(ChatMessage("user", "hi " * 1000),), system="be brief")
    assert budget.request_tokens(small) < 20 < budget.request_tokens(large)


def _at() -> datetime:
    return utc_now()

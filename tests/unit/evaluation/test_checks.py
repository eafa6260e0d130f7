"""Checks a team writes: loaded from a file or a module, their failures told apart from
their errors; rubrics a model grades."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import EvaluationError
from pipeline.evaluation.checks import GradedCheck, load_checks, load_graded, transcript
from pipeline.evaluation.outcome import ConversationResult
from pipeline.llm import ChatRequest, Completion
from pipeline.replay.diff import compare
from pipeline.replay.recording import select
from pipeline.services.agent import build
from tests.unit.evaluation.recordings import OFFER, SETTINGS, record

CHECKS = """
def check_short(conversation):
    assert all(len(a) < 10 for a in conversation.answers)


def check_said(conversation):
    assert conversation.user_messages == ["hello"], "not what was said"


def check_broken(conversation):
    raise KeyError("oops")


def helper(conversation):
    raise AssertionError("not a check: its name does not start with check_")
"""


async def result_of(*texts: str) -> ConversationResult:
    item = await record("c1", list(texts))
    recording = select("c1", item.events, build(SETTINGS, tools=OFFER))
    diff = compare("c1", recording.inputs, recording.outputs, recording.outputs)
    return ConversationResult(item.conversation, diff)


async def test_a_file_s_check_functions_pass_fail_or_err(tmp_path: Path) -> None:
    path = tmp_path / "my_checks.py"
    path.write_text(CHECKS)
    checks = load_checks([str(path)])
    assert [c.name for c in checks] == ["check_short", "check_said", "check_broken"]
    result = await result_of("hello")
    outcomes = [await c.run(result) for c in checks]
    assert [(o.outcome, o.message) for o in outcomes] == [
        ("failed", "assert all(len(a) < 10 for a in conversation.answers)"),
        ("passed", ""),
        ("error", "KeyError: 'oops'"),
    ]


def test_a_module_function_and_unknown_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "team_checks.py").write_text(CHECKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [c.name for c in load_checks(["team_checks:check_said"])] == ["check_said"]
    assert len(load_checks(["team_checks"])) == 3
    with pytest.raises(EvaluationError, match="cannot import"):
        load_checks(["no_such_checks_module"])
    with pytest.raises(EvaluationError, match="is not a function"):
        load_checks(["team_checks:nothing"])
    with pytest.raises(EvaluationError, match="two checks are named check_said"):
        load_checks(["team_checks:check_said", "team_checks:check_said"])


class Grader:
    name, model = "grader", "g"

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        return Completion(text=self.answer)

    async def aclose(self) -> None:
        return None


async def test_a_graded_check_reads_the_transcript_and_the_verdict(tmp_path: Path) -> None:
    rubrics = tmp_path / "rubrics.yaml"
    rubrics.write_text("polite: The assistant greets the user back.\n")
    [polite] = load_graded(rubrics)
    result = await result_of("hello")
    grader = Grader("PASS it greets back")
    assert (await polite.run(grader, result)).outcome == "passed"
    [request] = grader.requests
    assert "Rubric: The assistant greets the user back." in request.messages[0].content  # type: ignore[operator]
    assert "User: hello\nAssistant: Hello! How can I help you today?" in transcript(result)
    failed = await GradedCheck("polite", "x").run(Grader("FAIL: rude"), result)
    assert (failed.outcome, failed.message, failed.graded) == ("failed", "rude", True)
    unsure = await GradedCheck("polite", "x").run(Grader("maybe"), result)
    assert unsure.outcome == "error" and "neither PASS nor FAIL" in unsure.message


def test_rubrics_must_be_a_mapping_of_texts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- one\n- two\n")
    with pytest.raises(EvaluationError, match="must map"):
        load_graded(bad)

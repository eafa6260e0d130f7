"""Checks a team writes: plain Python functions, and rubrics a model grades.

A check is a function taking a :class:`~pipeline.evaluation.outcome.ConversationResult`
and asserting what must hold, pytest-style::

    def check_never_promises_a_refund(conversation):
        for answer in conversation.answers:
            assert "refund" not in answer.lower(), f"promises a refund: {answer!r}"

``--check`` names a file (``checks.py``: every function whose name starts with
``check_``), a module (the same, imported from the current folder or ``--app-dir``) or one
function (``module:function``). A failed assertion fails the check on that conversation,
with its message, or, for a bare ``assert``, the line that failed; any other exception is
an error of the check.

A graded check is a rubric (``--graded-checks rubrics.yaml``: name -> rubric) that a model
judges each conversation by, through the same provider interface as the agent's
(:class:`~pipeline.llm.LLMProvider`); off unless asked for. The grader reads the
transcript as the candidate would answer it and must start its answer with PASS or FAIL.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import EvaluationError, LLMError
from pipeline.evaluation.outcome import CheckResult, ConversationResult
from pipeline.llm.base import ChatMessage, ChatRequest, LLMProvider

PREFIX = "check_"
GRADER_SYSTEM = (
    "You review one conversation between a user and a support assistant against a rubric. "
    "Answer with PASS or FAIL as your first word, then one sentence saying why."
)


@dataclass(frozen=True, slots=True)
class Check:
    """A check function and the name reports give it."""

    name: str
    function: Callable[[ConversationResult], Any]

    async def run(self, result: ConversationResult) -> CheckResult:
        try:
            returned = self.function(result)
            if inspect.isawaitable(returned):
                await returned
        except AssertionError as exc:
            return CheckResult(self.name, "failed", str(exc) or _failed_line(exc))
        except Exception as exc:
            return CheckResult(self.name, "error", f"{type(exc).__name__}: {exc}")
        return CheckResult(self.name, "passed")


def _failed_line(exc: AssertionError) -> str:
    """The source line of a bare ``assert`` that failed."""
    frames = traceback.extract_tb(exc.__traceback__)
    return (frames[-1].line or "assertion failed") if frames else "assertion failed"


def load_checks(specs: Iterable[str]) -> list[Check]:
    """The checks ``specs`` name (a file, a module, or ``module:function``)."""
    found: list[Check] = []
    for spec in specs:
        if spec.endswith(".py") or Path(spec).is_file():
            module = _module_from_file(Path(spec))
            found += _checks_of(module, spec)
            continue
        module_name, _, attribute = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise EvaluationError(f"cannot import the checks {spec!r}: {exc}") from exc
        if not attribute:
            found += _checks_of(module, spec)
            continue
        function = getattr(module, attribute, None)
        if not callable(function):
            raise EvaluationError(f"{spec} is not a function")
        found.append(Check(attribute, function))
    names = [c.name for c in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise EvaluationError(f"two checks are named {', '.join(twice)}: rename one")
    return found


def _module_from_file(path: Path) -> Any:
    if not path.is_file():
        raise EvaluationError(f"no checks file {path}")
    name = f"pipeline_checks_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EvaluationError(f"cannot load the checks file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise EvaluationError(f"the checks file {path} failed to load: {exc!r}") from exc
    return module


def _checks_of(module: Any, spec: str) -> list[Check]:
    found = [
        Check(name, value)
        for name, value in vars(module).items()
        if name.startswith(PREFIX)
        and inspect.isfunction(value)
        and value.__module__ == module.__name__
    ]
    if not found:
        raise EvaluationError(f"{spec} has no function named {PREFIX}*")
    return found


@dataclass(frozen=True, slots=True)
class GradedCheck:
    """A rubric a model judges each conversation by."""

    name: str
    rubric: str

    async def run(self, grader: LLMProvider, result: ConversationResult) -> CheckResult:
        request = ChatRequest(
            messages=(ChatMessage("user", f"Rubric: {self.rubric}\n\n{transcript(result)}"),),
            system=GRADER_SYSTEM,
        )
        try:
            completion = await grader.complete(request)
        except LLMError as exc:
            return CheckResult(self.name, "error", f"the grader could not be asked: {exc}", True)
        answer = (completion.text or "").strip()
        verdict, _, why = answer.partition(" ")
        verdict = verdict.strip(".:,").upper()
        if verdict == "PASS":
            return CheckResult(self.name, "passed", why.strip(), True)
        if verdict == "FAIL":
            return CheckResult(self.name, "failed", why.strip() or "the grader said FAIL", True)
        return CheckResult(
            self.name, "error", f"the grader answered neither PASS nor FAIL: {answer[:200]}", True
        )


def load_graded(path: Path) -> list[GradedCheck]:
    """The rubrics of a YAML file (name -> rubric)."""
    try:
        rubrics = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EvaluationError(f"cannot read the graded checks {path}: {exc}") from exc
    if not isinstance(rubrics, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in rubrics.items()
    ):
        raise EvaluationError(f"{path} must map each graded check's name to its rubric (text)")
    return [GradedCheck(name, rubric.strip()) for name, rubric in rubrics.items()]


def transcript(result: ConversationResult) -> str:
    """The conversation as the candidate would have it, as text a grader reads."""
    lines: list[str] = []
    for item in result.diff.inputs:
        event = item.input
        if event.type == "message_received":
            lines.append(f"User: {event.get('text') or ''}")
        elif event.type == "operator_message":
            lines.append(f"Operator: {event.get('text') or ''}")
        for out in item.replayed:
            if out.type == "response_ready" and event.type != "operator_message":
                lines.append(f"Assistant: {out.get('text') or ''}")
            elif out.type in ("tool_called", "approval_requested"):
                lines.append(f"Assistant calls {out['tool']} with {out['arguments_json']}")
            elif out.type == "handoff_requested":
                lines.append(f"Assistant hands over to a person: {out.get('reason') or ''}")
    return "\n".join(lines)

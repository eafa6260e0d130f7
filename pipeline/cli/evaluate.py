"""``pipeline evaluate``: judge an agent version on recorded conversations before it ships.

Exit codes: 0 no check failed and no threshold is crossed; 1 a check failed (or erred) on
a conversation, or a threshold is crossed; 2 invalid arguments or settings, nothing to
evaluate, or Kafka unreachable (one line).
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

import click

from pipeline.cli.app_dir import app_dir_option, use_app_dir
from pipeline.cli.exits import errors_as_exit
from pipeline.cli.replay import NOT_REPLAYABLE, _moment, _unreachable_as_exit
from pipeline.config import Settings
from pipeline.errors import ConfigError, EvaluationError
from pipeline.llm.base import LLMProvider


@click.command()
@click.option(
    "--service",
    "spec",
    default="agent",
    show_default=True,
    help="The candidate: a built-in name or module.path:attribute (a service, or a factory "
    "taking the settings).",
)
@click.option(
    "--override",
    "-o",
    "overrides",
    multiple=True,
    metavar="NAME=VALUE",
    help="A setting of the candidate, by dotted name (llm.model=gpt-4o, "
    'llm.system_prompt=..., agent.approval_tools=\'{"*": ["refund"]}\'); repeat it.',
)
@click.option(
    "--baseline",
    default=None,
    help="The version running today, replayed too for the tokens, cost and latency before "
    "the change (default: --service without the overrides, when there are overrides).",
)
@click.option("--no-baseline", is_flag=True, help="Replay no baseline.")
@click.option("--tenant", "tenants", multiple=True, help="Only this tenant's conversations.")
@click.option("--channel", "channels", multiple=True, help="Only this channel's (web, slack...).")
@click.option("--since", default=None, help="Conversations with a user message from (ISO 8601).")
@click.option("--until", default=None, help="... and before this time (ISO 8601).")
@click.option("--sample", type=click.IntRange(min=1), default=None, help="At most N of them.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample's draw.")
@click.option(
    "--conversation", "conversation_ids", multiple=True, help="This conversation (repeat it)."
)
@click.option(
    "--set",
    "set_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Evaluate a recorded set saved with --save-set (the same records as then).",
)
@click.option(
    "--save-set",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Save the chosen conversations and their offsets to this file.",
)
@click.option(
    "--answers",
    type=click.Choice(["fresh", "recorded"]),
    default="fresh",
    show_default=True,
    help="fresh: ask the candidate's model; recorded: answer each model call as production's "
    "model did (a change of rules, tools or code judged on the same answers).",
)
@click.option(
    "--check",
    "checks",
    multiple=True,
    help="Check functions: a file or module (every check_* function) or module:function.",
)
@click.option(
    "--graded-checks",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Rubrics a model grades each conversation by (YAML: name -> rubric); off by default.",
)
@click.option(
    "--grader",
    default=None,
    help="The grading model: module.path:attribute (a provider, or a factory taking the "
    "LLM settings); default: the provider PIPELINE_LLM__* configures.",
)
@click.option(
    "--fail-if",
    "thresholds",
    multiple=True,
    metavar="METRIC>LIMIT[%]",
    help="Exit 1 when crossed: changed_answers>5%, new_handoffs>0, ... (repeat it).",
)
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--compare-with",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="An earlier JSON report of the same set: what moved since.",
)
@app_dir_option
def evaluate(
    spec: str,
    overrides: tuple[str, ...],
    baseline: str | None,
    no_baseline: bool,
    tenants: tuple[str, ...],
    channels: tuple[str, ...],
    since: str | None,
    until: str | None,
    sample: int | None,
    seed: int,
    conversation_ids: tuple[str, ...],
    set_file: Path | None,
    save_set: Path | None,
    answers: str,
    checks: tuple[str, ...],
    graded_checks: Path | None,
    grader: str | None,
    thresholds: tuple[str, ...],
    concurrency: int,
    html: Path | None,
    json_path: Path | None,
    compare_with: Path | None,
    app_dir: Path,
) -> None:
    """Replay recorded conversations through a candidate agent and compare with production.

    Conversations are chosen from message_received (--tenant, --channel, --since, --until,
    --sample, --conversation) or read from a saved set (--set); each is replayed in memory,
    several at once, with nothing produced to Kafka, sent to a channel or run as a tool.
    The summary goes to stdout; --html and --json write the reports.
    """
    from pipeline.evaluation.candidate import Candidate, parse_overrides
    from pipeline.evaluation.checks import load_checks, load_graded
    from pipeline.evaluation.html_report import write_html
    from pipeline.evaluation.recorded_set import RecordedSet
    from pipeline.evaluation.report import Previous, ResultLog, header, write_json
    from pipeline.evaluation.runner import Evaluation
    from pipeline.evaluation.runner import evaluate as run
    from pipeline.evaluation.selection import Selection, select
    from pipeline.evaluation.summary import Threshold, verdict
    from pipeline.events.wire import make_serde

    if set_file is not None and (
        tenants or channels or since or until or sample or conversation_ids
    ):
        raise click.UsageError(
            "--set reads a saved set: choose conversations with it or the options"
        )
    selection = Selection(
        tenants, channels, _moment(since), _moment(until), sample, seed, conversation_ids
    )
    use_app_dir(app_dir)
    with errors_as_exit(), _unreachable_as_exit():
        if spec in NOT_REPLAYABLE:
            raise ConfigError(f"{spec} cannot be evaluated: {NOT_REPLAYABLE[spec]}")
        settings = Settings()
        serde = make_serde(settings, register=False)
        candidate = Candidate(spec, parse_overrides(overrides))
        before = None
        if not no_baseline and (baseline is not None or candidate.overrides):
            before = Candidate(baseline or spec)
        for version in (candidate, before):
            if version is not None:  # a wrong spec or setting fails before Kafka is read
                version.build(version.settings(settings), None)
        limits = [Threshold.parse(t) for t in thresholds]
        found_checks = load_checks(checks)
        graded = load_graded(graded_checks) if graded_checks else []
        recorded = RecordedSet.load(set_file) if set_file else select(settings, serde, selection)
        if save_set is not None:
            recorded.save(save_set)
        previous = Previous.load(compare_with) if compare_with else None
        evaluation = Evaluation(
            settings,
            serde,
            recorded,
            candidate,
            before,
            "recorded" if answers == "recorded" else "fresh",
            found_checks,
            graded,
            _grader(grader, settings) if graded else None,
            concurrency,
        )
        with (
            ResultLog(previous) as log,
            click.progressbar(
                length=len(recorded.conversations), label="evaluating", file=sys.stderr
            ) as progress,
        ):

            def sink(result: Any) -> None:
                log.add(result)
                progress.update(1)

            async def evaluate_all() -> None:
                try:
                    await run(evaluation, sink)
                finally:
                    if evaluation.grader is not None:
                        await evaluation.grader.aclose()

            asyncio.run(evaluate_all())
            outcome = verdict(log.totals, limits)
            head = header(
                candidate=_describe(candidate),
                baseline=_describe(before) if before else None,
                answers=evaluation.answers,
                recorded_set={
                    "conversations": len(recorded.conversations),
                    "topic_prefix": recorded.topic_prefix,
                    "selection": dict(recorded.selection),
                    "path": str(set_file or save_set) if (set_file or save_set) else None,
                },
                log=log,
                verdict=outcome.as_json(),
            )
            if json_path is not None:
                write_json(json_path, head, log)
            if html is not None:
                write_html(html, head, log)
            click.echo(_summary(head, log))
    sys.exit(outcome.exit_code)


def _describe(candidate: Any) -> dict[str, Any]:
    return {
        "spec": candidate.spec,
        "overrides": dict(candidate.overrides),
        "label": candidate.label,
    }


def _grader(spec: str | None, settings: Settings) -> LLMProvider:
    """The grading model: ``module:attribute`` or the configured provider."""
    from prometheus_client import CollectorRegistry

    from pipeline.llm import create_provider

    if spec is None:
        return create_provider(settings.llm, registry=CollectorRegistry(), service="evaluate")
    module_name, _, attribute = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise EvaluationError(f"cannot load the grader {spec!r}: {exc}") from exc
    provider = (
        found(settings.llm) if isinstance(found, type) or not hasattr(found, "complete") else found
    )
    if not hasattr(provider, "complete"):
        raise EvaluationError(f"{spec} is not an LLM provider (it has no complete())")
    return provider  # type: ignore[no-any-return]


def _summary(head: dict[str, Any], log: Any) -> str:
    summary, counts = head["summary"], head["summary"]["counts"]
    lines = [
        f"{summary['conversations']} conversation(s) evaluated against "
        f"{head['candidate']['label']}: {summary['changed_conversations']} changed, "
        f"{summary['unchanged_conversations']} unchanged",
        f"  answers changed {counts['changed_answers']}/{counts['answers']}, tool calls added "
        f"{counts['added_tool_calls']}, removed {counts['removed_tool_calls']}, arguments changed "
        f"{counts['changed_tool_arguments']}, handoffs new {counts['new_handoffs']}, lost "
        f"{counts['lost_handoffs']}, approvals new {counts['new_approvals']}, lost "
        f"{counts['lost_approvals']}, dead letters {counts['dead_letters']}",
    ]
    for conversation in log.conversations():
        failing = [c for c in conversation["checks"] if c["outcome"] != "passed"]
        if conversation["changed"]:
            kinds = ", ".join(f"{k} x{n}" for k, n in conversation["kinds"].items())
            lines.append(f"  changed: {conversation['conversation_id']}: {kinds}")
        for check in failing:
            lines.append(
                f"  check {check['name']} {check['outcome']} on "
                f"{conversation['conversation_id']}: {check['message']}"
            )
    verdict = head["verdict"]
    if verdict["exit_code"]:
        lines += [f"FAIL: {reason}" for reason in verdict["reasons"]]
    else:
        lines.append("PASS")
    return "\n".join(lines)

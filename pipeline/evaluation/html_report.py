"""The HTML report: one static file, nothing fetched when it is opened.

At the top the verdict, the summary table and the plots (how many changes per
conversation and of which kind, tokens and cost before and after, latency per turn);
then the checks; then every conversation, the changed ones first in the order they were
evaluated, each changed input as its recorded outputs beside the candidate's, line by
line. The styles are inline, the plots inline SVG (:mod:`.charts`), and there is no
script. Written from the results file one conversation at a time (Jinja2's ``generate``),
with autoescaping on: whatever a user, an operator or a model wrote is shown as text.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from pipeline.evaluation import charts
from pipeline.evaluation.report import ResultLog

TEMPLATES = Path(__file__).with_name("templates")
MOST_KINDS = 12  # change kinds plotted; the rest are in the table


def write_html(path: Path, head: dict[str, Any], log: ResultLog) -> None:
    """The report for ``head`` (see :func:`.report.header`) and the results in ``log``."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    template = environment.get_template("report.html")
    summary = head["summary"]
    stream = template.generate(
        head=head,
        summary=summary,
        counts=summary["counts"],
        plots=_plots(head, log),
        conversations=_ordered(log),
        side_by_side=side_by_side,
    )
    with path.open("w", encoding="utf-8") as out:
        for chunk in stream:
            out.write(chunk)


def _ordered(log: ResultLog) -> Iterator[dict[str, Any]]:
    """Changed conversations (or failing a check) first, then the others, each in the
    order they were evaluated: two passes over the results file."""
    for wanted in (True, False):
        for conversation in log.conversations():
            if _noteworthy(conversation) == wanted:
                yield conversation


def _noteworthy(conversation: dict[str, Any]) -> bool:
    failing = any(c["outcome"] != "passed" for c in conversation["checks"])
    return bool(conversation["changed"] or failing)


def _plots(head: dict[str, Any], log: ResultLog) -> list[Markup]:
    totals = log.totals
    kinds = sorted(totals.kinds.items(), key=lambda kc: (-kc[1], kc[0]))[:MOST_KINDS]
    per_conversation = totals.changes_per_conversation
    spread: dict[int, int] = {}
    for changes in per_conversation:
        spread[min(changes, 10)] = spread.get(min(changes, 10), 0) + 1
    distribution = [
        (f"{n}{'+' if n == 10 else ''} change{'' if n == 1 else 's'}", float(spread[n]))
        for n in sorted(spread)
    ]
    plots = [
        charts.bars("Conversations by number of changes", distribution),
        charts.bars("Changes by kind", [(k, float(v)) for k, v in kinds]),
    ]
    baseline = head["baseline"] is not None and bool(totals.baseline_tokens)
    series = ["before (baseline)", "after (candidate)"] if baseline else ["candidate"]
    tokens = [float(sum(totals.candidate_tokens))]
    cost = [sum(totals.candidate_cost)]
    if baseline:
        tokens = [float(sum(totals.baseline_tokens)), *tokens]
        cost = [sum(totals.baseline_cost), *cost]
    title = "Model tokens, all conversations"
    if any(tokens):
        plots.append(charts.grouped(title, [("tokens", tokens)], series))
    else:
        plots.append(charts.note(title, "no tokens: the model reported none (or none was asked)"))
    if totals.priced:
        plots.append(charts.grouped("Model cost, all conversations", [("cost", cost)], series))
    sides = [
        ("recorded (production)", "recorded"),
        ("baseline", "baseline"),
        ("candidate", "candidate"),
    ]
    samples = [
        (name, totals.turn_seconds[key]) for name, key in sides if key in totals.turn_seconds
    ]
    plots.append(charts.histogram("Latency per turn", samples))
    # Drawn by charts, which escapes every text it writes.
    return [Markup(svg) for svg in plots]


def side_by_side(recorded: Iterable[str], replayed: Iterable[str]) -> list[tuple[str, str, str]]:
    """Rows of (recorded line, replayed line, how they differ: same, changed, removed,
    added), aligned as a diff aligns them."""
    old, new = list(recorded), list(replayed)
    rows: list[tuple[str, str, str]] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows += [(line, line, "same") for line in old[i1:i2]]
            continue
        left, right = old[i1:i2], new[j1:j2]
        for index in range(max(len(left), len(right))):
            a = left[index] if index < len(left) else ""
            b = right[index] if index < len(right) else ""
            kind = "changed" if a and b else ("removed" if a else "added")
            rows.append((a, b, kind))
    return rows

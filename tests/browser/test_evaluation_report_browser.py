"""The evaluation's HTML report in a real browser: it opens from a file with nothing
fetched, its plots are drawn and visible, and each changed input shows its recorded
outputs beside the candidate's. A screenshot is kept as a test artefact."""

from __future__ import annotations

from pathlib import Path

from pipeline.evaluation import Candidate, ConversationResult, Evaluation, RecordedSet
from pipeline.evaluation.checks import Check
from pipeline.evaluation.html_report import write_html
from pipeline.evaluation.report import ResultLog, header
from pipeline.evaluation.runner import evaluate
from pipeline.evaluation.summary import Threshold, verdict
from pipeline.events.wire import make_serde
from tests.browser_support import chromium, screenshot, texts, wait_for
from tests.unit.evaluation.recordings import OFFER, SETTINGS, record


def no_handover(conversation: ConversationResult) -> None:
    for answer in conversation.answers:
        assert "passing you to a person" not in answer, f"hands over: {answer!r}"


async def report(path: Path) -> None:
    recorded = [
        await record("web:acme:u1", ["hello", "what did I say?"]),
        await record("web:acme:u2", ["I want to talk to a human"]),
        await record("web:acme:u3", ["what time is it?"]),
        await record("web:acme:u4", ["good morning"]),
    ]
    rule = Candidate("agent", {"agent": {"handoff_phrases": {"*": ["hello"]}}})
    evaluation = Evaluation(
        SETTINGS,
        make_serde(SETTINGS, register=False),
        RecordedSet(()),
        rule,
        baseline=Candidate(),
        checks=[Check("no_handover", no_handover)],
        tools=OFFER,
    )
    with ResultLog() as log:
        await evaluate(evaluation, log.add, recorded)
        head = header(
            candidate={"spec": rule.spec, "overrides": dict(rule.overrides), "label": rule.label},
            baseline={"spec": "agent", "overrides": {}, "label": "agent"},
            answers="fresh",
            recorded_set={"conversations": 4, "topic_prefix": "", "selection": {}, "path": None},
            log=log,
            verdict=verdict(log.totals, [Threshold.parse("new_handoffs>0")]).as_json(),
        )
        write_html(path, head, log)


async def test_the_report_opens_with_its_plots_and_diffs_visible(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    await report(page)
    with chromium(height=1600) as driver:
        driver.get(page.as_uri())
        wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete")
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert fetched == [], "the report fetched nothing"
        charts = driver.execute_script(
            "return [...document.querySelectorAll('#plots svg')].map(s => {"
            "const r = s.getBoundingClientRect(); return [r.width, r.height,"
            " s.querySelectorAll('rect.bar').length, s.querySelector('title').textContent]})"
        )
        titles = [title for _, _, _, title in charts]
        assert "Changes by kind" in titles and "Latency per turn" in titles
        for width, height, bars, title in charts:
            assert width > 300 and height > 50, title
            if title in ("Changes by kind", "Latency per turn"):
                assert bars > 0, title
        verdict_text = texts(driver, "#verdict")[0]
        assert "threshold new_handoffs>0 crossed: 1" in verdict_text
        # "hello" now hands over (the check fails); asking for a human no longer does.
        assert "check no_handover failed on 1 conversation(s)" in verdict_text
        section = "#conversation-web\\:acme\\:u1"
        rows = driver.execute_script(
            "return [...document.querySelectorAll(arguments[0] + ' table.diff tr')]"
            ".filter(r => r.getBoundingClientRect().height > 0)"
            ".map(r => [r.className, r.cells[0].textContent, r.cells[1].textContent])",
            section,
        )
        assert ["added", "", "handoff_requested"] in rows
        assert any(
            c == "changed" and "Hello!" in old and "passing you" in new for c, old, new in rows
        )
        failure = texts(driver, f"{section} .check-failure")
        assert failure and "no_handover" in failure[0] and "hands over" in failure[0]
        screenshot(driver, "evaluation-report")

"""The HTML report: one file with its plots inline, nothing fetched, text escaped, and
each changed input beside its recording."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.evaluation import Candidate
from pipeline.evaluation.html_report import side_by_side, write_html
from pipeline.evaluation.report import ResultLog, header
from pipeline.evaluation.summary import verdict
from tests.unit.evaluation.test_report import results


async def test_the_page_holds_its_plots_and_diffs_and_fetches_nothing(tmp_path: Path) -> None:
    rule = Candidate("agent", {"agent": {"handoff_phrases": {"*": ["hello"]}}})
    page = tmp_path / "report.html"
    with ResultLog() as log:
        for result in await results(rule):
            log.add(result)
        head = header(
            candidate={"spec": "agent", "overrides": {}, "label": "<script>alert(1)</script>"},
            baseline=None,
            answers="fresh",
            recorded_set={"conversations": 2, "topic_prefix": "", "selection": {}, "path": None},
            log=log,
            verdict=verdict(log.totals, []).as_json(),
        )
        write_html(page, head, log)
    html = page.read_text()
    assert html.count("<svg") >= 4
    assert "Changes by kind" in html and "+handoff_requested" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert re.search(r'(src|href)="(https?:)?//', html) is None, "nothing is fetched"
    assert "@import" not in html and "url(" not in html
    assert '<tr class="added"><td class="old"></td><td class="new">handoff_requested</td>' in html
    # Changed conversations first.
    assert html.index('id="conversation-c1"') < html.index('id="conversation-c2"')


def test_side_by_side_aligns_lines_as_a_diff_does() -> None:
    rows = side_by_side(["a", "b", "c"], ["a", "B", "c", "d"])
    assert rows == [
        ("a", "a", "same"),
        ("b", "B", "changed"),
        ("c", "c", "same"),
        ("", "d", "added"),
    ]
    assert side_by_side(["x"], []) == [("x", "", "removed")]

"""The JSON report: written from the results file, valid against its schema, and
compared with an earlier run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from pipeline.evaluation import Candidate, ConversationResult, Evaluation, RecordedSet
from pipeline.evaluation.report import SCHEMA, Previous, ResultLog, header, write_json
from pipeline.evaluation.runner import evaluate
from pipeline.evaluation.summary import Threshold, verdict
from pipeline.events.wire import make_serde
from tests.unit.evaluation.recordings import OFFER, SETTINGS, record


async def results(candidate: Candidate) -> list[ConversationResult]:
    recorded = [
        await record("c1", ["hello", "what did I say?"]),
        await record("c2", ["I want to talk to a human"]),
    ]
    evaluation = Evaluation(
        SETTINGS, make_serde(SETTINGS, register=False), RecordedSet(()), candidate, tools=OFFER
    )
    found: list[ConversationResult] = []
    await evaluate(evaluation, found.append, recorded)
    return sorted(found, key=lambda r: r.conversation_id)


def written(
    path: Path, found: list[ConversationResult], previous: Previous | None
) -> dict[str, Any]:
    with ResultLog(previous) as log:
        for result in found:
            log.add(result)
        head = header(
            candidate={"spec": "agent", "overrides": {}, "label": "agent"},
            baseline=None,
            answers="fresh",
            recorded_set={"conversations": 2, "topic_prefix": "", "selection": {}, "path": None},
            log=log,
            verdict=verdict(log.totals, [Threshold.parse("new_handoffs>0")]).as_json(),
        )
        write_json(path, head, log)
    report: dict[str, Any] = json.loads(path.read_text())
    jsonschema.validate(report, json.loads(SCHEMA.read_text()))
    return report


async def test_the_report_validates_and_is_compared_with_an_earlier_one(tmp_path: Path) -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA.read_text()))
    first = written(tmp_path / "first.json", await results(Candidate()), None)
    assert first["summary"]["conversations"] == 2
    assert [c["changed"] for c in first["conversations"]] == [False, False]
    assert first["verdict"] == {
        "exit_code": 0,
        "reasons": [],
        "thresholds": [{"expression": "new_handoffs>0", "value": 0.0, "crossed": False}],
    }
    rule = Candidate("agent", {"agent": {"handoff_phrases": {"*": ["hello"]}}})
    second = written(
        tmp_path / "second.json", await results(rule), Previous.load(tmp_path / "first.json")
    )
    assert second["previous"]["now_changed"] == ["c1", "c2"]
    assert second["verdict"]["exit_code"] == 1
    [c1, _] = second["conversations"]
    assert c1["previous"] == {"changed": False, "failed_checks": []}
    assert c1["kinds"]["+handoff_requested"] == 1
    assert any("handoff_requested" in line for line in c1["changes"][0]["replayed"])

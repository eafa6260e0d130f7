"""Thresholds a CI gate sets, and the verdict."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.errors import EvaluationError
from pipeline.evaluation.outcome import Counts
from pipeline.evaluation.summary import Threshold, Totals, verdict


def totals(**counts: int) -> Totals:
    made = Totals(conversations=20, changed_conversations=2)
    made.counts = Counts(**counts)
    return made


def test_a_threshold_is_a_count_or_a_share_of_its_base() -> None:
    five = Threshold.parse("changed_answers>5%")
    assert (five.metric, five.limit, five.percent) == ("changed_answers", 5.0, True)
    assert five.value(totals(answers=40, changed_answers=2)) == 5.0
    assert not five.crossed(totals(answers=40, changed_answers=2))
    assert five.crossed(totals(answers=40, changed_answers=3))
    any_handoff = Threshold.parse(" new_handoffs > 0 ")
    assert any_handoff.crossed(totals(new_handoffs=1))
    assert not any_handoff.crossed(totals())
    assert Threshold.parse("changed_conversations>=10%").crossed(totals())  # 2 of 20
    assert Threshold.parse("changed_answers>5%").value(totals()) == 0.0  # no answers


@pytest.mark.parametrize("text", ["answers>5%", "changed_answers<5", "changed_answers>x"])
def test_an_unknown_metric_or_form_is_refused(text: str) -> None:
    with pytest.raises(EvaluationError, match="METRIC>LIMIT"):
        Threshold.parse(text)


def test_the_verdict_fails_on_a_crossed_threshold_or_a_failed_check() -> None:
    assert verdict(totals(), [Threshold.parse("new_handoffs>0")]).exit_code == 0
    crossed = verdict(totals(new_handoffs=2), [Threshold.parse("new_handoffs>0")])
    assert crossed.exit_code == 1
    assert crossed.reasons == ("threshold new_handoffs>0 crossed: 2",)
    assert crossed.thresholds == ({"expression": "new_handoffs>0", "value": 2.0, "crossed": True},)
    checked = totals()
    checked.checks["no_refund"] = Counter(passed=3, error=1)
    assert verdict(checked, []).reasons == ("check no_refund failed on 1 conversation(s)",)

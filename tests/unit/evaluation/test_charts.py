"""The report's plots as SVG text."""

from __future__ import annotations

from pipeline.evaluation import charts


def test_bars_escape_their_labels_and_name_their_values() -> None:
    svg = charts.bars("Changes by kind", [("<b>text</b>", 3.0), ("+tool_called", 1.0)])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'role="img"' in svg and "<title>Changes by kind</title>" in svg
    assert "&lt;b&gt;text&lt;/b&gt;" in svg and "<b>" not in svg
    assert svg.count('class="bar"') == 2


def test_latency_buckets_grow_and_empty_ones_at_the_ends_are_left_out() -> None:
    svg = charts.histogram("Latency", [("replay", [0.002, 0.002, 0.02]), ("prod", [1.5])])
    assert "\u22643 ms" in svg and "\u22643 s" in svg
    assert "\u22641 ms" not in svg and "&gt;30 s" not in svg
    assert "replay: 2" in svg
    assert "nothing to show" in charts.histogram("Latency", [("replay", [])])
    assert "nothing to show" in charts.grouped("Tokens", [], ["a"])

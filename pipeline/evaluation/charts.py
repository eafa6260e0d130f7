"""The evaluation report's plots, drawn as inline SVG.

Hand-made rather than a plotting library: the report is one static file that must open
with nothing downloaded (no script, font or stylesheet from elsewhere), the plots are
three simple kinds (bars, grouped bars, histograms), and SVG text is what a browser test
and a reader can both check. Every text is escaped; every chart has a ``<title>`` and
``role="img"`` for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH = 560
BAR_HEIGHT = 22
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759")


def bars(title: str, items: Sequence[tuple[str, float]], unit: str = "") -> str:
    """A horizontal bar per (label, value), largest first as given."""
    if not items:
        return _empty(title)
    label_width, top = 220, 28
    most = max(v for _, v in items) or 1.0
    height = top + len(items) * (BAR_HEIGHT + 6) + 8
    parts = [_open(title, height), _heading(title)]
    for index, (label, value) in enumerate(items):
        y = top + index * (BAR_HEIGHT + 6)
        length = (WIDTH - label_width - 70) * value / most
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end">'
            f"{escape(_short(label, 32))}</text>"
            f'<rect class="bar" x="{label_width}" y="{y}" width="{length:.1f}" '
            f'height="{BAR_HEIGHT}" fill="{COLOURS[0]}"><title>{escape(label)}: '
            f"{_number(value)}{unit}</title></rect>"
            f'<text x="{label_width + length + 6:.1f}" y="{y + 16}">{_number(value)}{unit}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def grouped(
    title: str, groups: Sequence[tuple[str, Sequence[float]]], series: Sequence[str]
) -> str:
    """Vertical bars: per group (label, one value per series), the series side by side."""
    if not groups or not series:
        return _empty(title)
    top, bottom, left = 40, 40, 16
    height = 240
    plot = height - top - bottom
    most = max((v for _, values in groups for v in values), default=0.0) or 1.0
    slot = (WIDTH - 2 * left) / len(groups)
    bar = min(48.0, (slot - 24) / len(series))
    parts = [_open(title, height), _heading(title), _legend(series, WIDTH - left)]
    for g, (label, values) in enumerate(groups):
        x0 = left + g * slot + (slot - bar * len(series)) / 2
        for s, value in enumerate(values):
            h = plot * value / most
            x, y = x0 + s * bar, top + plot - h
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar - 4:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[s % len(COLOURS)]}"><title>{escape(label)}, '
                f"{escape(series[s])}: {_number(value)}</title></rect>"
                f'<text x="{x + (bar - 4) / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle">'
                f"{_number(value)}</text>"
            )
        parts.append(
            f'<text x="{left + (g + 0.5) * slot:.1f}" y="{height - bottom + 18}" '
            f'text-anchor="middle">{escape(_short(label, 28))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


LATENCY_EDGES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
"""Bucket bounds (seconds) of the latency histogram: replays take milliseconds, model
calls and production's turns seconds, so the buckets grow by about three each."""


def histogram(
    title: str,
    samples: Sequence[tuple[str, Sequence[float]]],
    edges: Sequence[float] = LATENCY_EDGES,
) -> str:
    """How many values of each series fall in each bucket (up to each edge, then beyond
    the last), the series side by side; buckets no series reaches are left out."""
    if not any(series for _, series in samples):
        return _empty(title)
    labels = [f"\u2264{_seconds(edge)}" for edge in edges] + [f">{_seconds(edges[-1])}"]
    counts = [[0.0] * len(labels) for _ in samples]
    for s, (_, series) in enumerate(samples):
        for value in series:
            index = next((i for i, edge in enumerate(edges) if value <= edge), len(edges))
            counts[s][index] += 1
    used = [i for i in range(len(labels)) if any(c[i] for c in counts)]
    first, last = min(used), max(used)
    groups = [(labels[i], [c[i] for c in counts]) for i in range(first, last + 1)]
    return grouped(title, groups, [name for name, _ in samples])


def _seconds(value: float) -> str:
    return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"


def _open(title: str, height: int) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">'
        f"<title>{escape(title)}</title>"
    )


def _heading(title: str) -> str:
    return f'<text class="heading" x="8" y="18">{escape(title)}</text>'


def _legend(series: Sequence[str], right: float) -> str:
    parts = []
    x = right
    for index in reversed(range(len(series))):
        name = escape(series[index])
        x -= 14 + 7 * len(series[index]) + 12
        parts.append(
            f'<rect x="{x:.0f}" y="8" width="10" height="10" '
            f'fill="{COLOURS[index % len(COLOURS)]}"/>'
            f'<text x="{x + 14:.0f}" y="17">{name}</text>'
        )
    return "".join(parts)


def note(title: str, text: str) -> str:
    """A chart with nothing to draw: its title and why."""
    return _open(title, 60) + _heading(title) + f'<text x="8" y="44">{escape(text)}</text></svg>'


def _empty(title: str) -> str:
    return note(title, "nothing to show")


def _short(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"

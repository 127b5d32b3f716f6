"""Bar charts drawn on the server as SVG: no script, no front-end build, readable by a
screen reader (a title and one text label per bar), printable."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, BAR_H, GAP, LABEL_W, VALUE_W = 420, 22, 8, 110, 48


def bar_chart(title: str, bars: Sequence[tuple[str, int]], *, colour: str = "#1f5fad") -> str:
    """A horizontal bar chart: one labelled bar per (label, count)."""
    top = max([n for _, n in bars] + [1])
    height = len(bars) * (BAR_H + GAP) + GAP
    span = WIDTH - LABEL_W - VALUE_W
    rows = []
    for i, (label, n) in enumerate(bars):
        y = GAP + i * (BAR_H + GAP)
        w = round(span * n / top)
        rows.append(
            f'<text x="{LABEL_W - 6}" y="{y + BAR_H * 0.7:.1f}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL_W}" y="{y}" width="{w}" height="{BAR_H}" fill="{colour}" rx="2"/>'
            f'<text x="{LABEL_W + w + 6}" y="{y + BAR_H * 0.7:.1f}">{n}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" '
            f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" font-size="13" '
            f'font-family="sans-serif" fill="#1f2933"><title>{escape(title)}</title>{"".join(rows)}</svg>')

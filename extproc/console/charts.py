"""Stacked bar charts as inline SVG, drawn on the server.

Why not a chart library: the console must work offline and ship in the wheel, and its charts are
bars over at most 60 buckets. A vendored JS library would add 60-200 KB to the wheel and script to
every page (and to its Content-Security-Policy); this is a few hundred bytes of markup per chart
that render before any script could run. Every label is escaped: key and model names come from
clients and config.
"""

from __future__ import annotations

import time
from typing import Any

from markupsafe import Markup, escape

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
OTHERS = "others"
OTHER_COLOUR = "#bab0ac"
_W, _H, _LEFT, _BOTTOM, _TOP = 640, 180, 56, 22, 8


def _label(bucket: int, size: int) -> str:
    fmt = "%H:%M" if size < 86400 else "%m-%d"
    return time.strftime(fmt, time.gmtime(bucket))


def _number(value: float, money: bool) -> str:
    if money:
        return f"${value:.2f}" if value >= 1 else f"${value:.4f}"
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _top(series: dict[str, list[float]], most: int) -> dict[str, list[float]]:
    """The `most - 1` largest series and the rest summed as `others`."""
    ranked = sorted(series.items(), key=lambda item: -sum(item[1]))
    if len(ranked) <= most:
        return dict(ranked)
    kept = dict(ranked[:most - 1])
    rest: list[float] = [sum(vals) for vals in zip(*(v for _, v in ranked[most - 1:]), strict=True)]
    return {**kept, OTHERS: rest}


def stacked_bars(chart: dict[str, Any], title: str, money: bool = False) -> Markup:
    """An accessible SVG (role img, a title, one `<title>` per bar) with a legend."""
    buckets: list[int] = chart["buckets"]
    series = _top(chart["series"], len(PALETTE))
    # colours by name, not by size, so a provider keeps its colour from chart to chart
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(n for n in series if n != OTHERS))}
    colour[OTHERS] = OTHER_COLOUR
    n = max(len(buckets), 1)
    totals = [sum(v[i] for v in series.values()) for i in range(len(buckets))]
    peak = max(totals, default=0) or 1
    plot_w, plot_h = _W - _LEFT - 4, _H - _BOTTOM - _TOP
    bar_w = plot_w / n
    out = [f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
           f'<text x="{_LEFT - 6}" y="{_TOP + 8}" text-anchor="end" class="axis">{_number(peak, money)}</text>',
           f'<text x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end" class="axis">0</text>',
           f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_W - 4}" y2="{_TOP + plot_h}" class="base"/>']
    for i, bucket in enumerate(buckets):
        y = _TOP + plot_h
        x = _LEFT + i * bar_w
        for name, values in series.items():
            value = values[i]
            if value <= 0:
                continue
            h = value / peak * plot_h
            y -= h
            out.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" '
                       f'fill="{colour[name]}"><title>{escape(name)} {_label(bucket, chart["size"])}: '
                       f'{_number(value, money)}</title></rect>')
        if n <= 12 or i % max(n // 6, 1) == 0:
            out.append(f'<text x="{x + bar_w / 2:.1f}" y="{_H - 6}" text-anchor="middle" class="axis">'
                       f'{_label(bucket, chart["size"])}</text>')
    out.append("</svg>")
    legend = "".join(f'<li><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" '
                     f'fill="{colour[name]}"/></svg> {escape(name)}</li>' for name in series)
    empty = "" if any(totals) else '<p class="muted">nothing recorded in this window</p>'
    return Markup(f'<figure><figcaption>{escape(title)}</figcaption>{"".join(out)}'
                  f'<ul class="legend">{legend}</ul>{empty}</figure>')

"""Inline SVG charts of the HTML page: per-dimension headline bars, jailbreak attacks, the safety
trade-off plot."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trustwatch.tools.reports.model import (
    DASH,
    JAILBREAK,
    MetricEntry,
    RunReport,
    _arrow,
    _ci,
    _jailbreak_attacks,
    _metrics,
    _num,
    _Point,
    fmt,
    headline_key,
)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _text_w(s: str, px: float = 12) -> float:
    return len(s) * px * 0.56


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _nice_ticks(lo: float, hi: float) -> list[float]:
    span = hi - lo
    step = 0.25 if span <= 1.5 else (0.5 if span <= 3 else 10 ** math.floor(math.log10(span / 2)))
    first = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], first
    while v <= hi + 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _legend(runs: Sequence[RunReport], x0: float, y0: float, width: float) -> tuple[list[str], float]:
    parts, x, y = [], x0, y0
    for r in runs:
        w = 18 + _text_w(r.label) + 18
        if x + w > x0 + width and x > x0:
            x, y = x0, y + 18
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="11" height="11" rx="2" fill="{r.color}"/>'
            f'<text x="{x + 16:.1f}" y="{y:.1f}" class="lg">{_e(r.label)}</text>'
        )
        x += w
    return parts, y + 18 - y0


@dataclass
class _Bar:
    run: RunReport
    value: float | None
    lo: float | None
    hi: float | None
    tip: str


def _hbar_svg(
    groups: Sequence[tuple[str, str, list[_Bar]]],
    runs: Sequence[RunReport],
    svg_id: str,
    title: str,
    domain: tuple[float, float] | None = None,
) -> str:
    """Horizontal grouped bars (one group per row label, one bar per target) with CI whiskers."""
    vals = [v for _, _, bars in groups for b in bars for v in (b.value, b.lo, b.hi) if v is not None]
    lo, hi = domain or (min([0.0, *vals]), max([1.0, *vals]))
    width = 900
    label_w = min(300.0, max(80.0, max((_text_w(g[0]) for g in groups), default=80) + 12))
    x0, x1 = label_w + 8, width - 56
    legend, leg_h = _legend(runs, x0, 34, x1 - x0)
    top = 34 + leg_h + 6
    bar_h, gap, pad = 12, 2, 10
    n = max(1, len(runs))
    group_h = n * bar_h + (n - 1) * gap + pad * 2

    def sx(v: float) -> float:
        return x0 + (min(max(v, lo), hi) - lo) / (hi - lo) * (x1 - x0)

    height = top + group_h * len(groups) + 30
    p = [
        (
            f'<svg id="{_e(svg_id)}" class="chart" viewBox="0 0 {width} {height:.0f}" width="{width}" '
            f'height="{height:.0f}" role="img" aria-label="{_e(title)}">'
        ),
        f'<text x="8" y="18" class="ttl">{_e(title)}</text>',
        *legend,
    ]
    for t in _nice_ticks(lo, hi):
        x = sx(t)
        p.append(
            f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{height - 24:.1f}" class="grid"/>'
            f'<text x="{x:.1f}" y="{height - 10:.1f}" class="tick" text-anchor="middle">{t:g}</text>'
        )
    zero = sx(0.0)
    for gi, (label, full, bars) in enumerate(groups):
        gy = top + gi * group_h
        if gi % 2:
            p.append(f'<rect x="0" y="{gy:.1f}" width="{x1:.0f}" height="{group_h}" class="band"/>')
        p.append(
            f'<text x="{label_w:.1f}" y="{gy + group_h / 2 + 4:.1f}" class="lbl" text-anchor="end">'
            f"<title>{_e(full)}</title>{_e(label)}</text>"
        )
        for b in bars:
            ri = next(i for i, r in enumerate(runs) if r is b.run)
            y = gy + pad + ri * (bar_h + gap)
            tip = f"<title>{_e(b.tip)}</title>"
            if b.value is None:
                p.append(
                    f'<text x="{zero + 4:.1f}" y="{y + bar_h - 2:.1f}" class="val none">{tip}{DASH} no value</text>'
                )
                continue
            xa, xb = sorted((zero, sx(b.value)))
            p.append(
                f'<rect x="{xa:.1f}" y="{y:.1f}" width="{max(xb - xa, 1.0):.1f}" height="{bar_h}" '
                f'fill="{b.run.color}" class="bar" data-target="{_e(b.run.label)}" '
                f'data-value="{b.value!r}">{tip}</rect>'
            )
            end = sx(b.value)
            if b.lo is not None and b.hi is not None:
                wl, wh, cy = sx(b.lo), sx(b.hi), y + bar_h / 2
                p.append(
                    f'<path d="M{wl:.1f},{cy:.1f}H{wh:.1f}M{wl:.1f},{cy - 4:.1f}V{cy + 4:.1f}'
                    f'M{wh:.1f},{cy - 4:.1f}V{cy + 4:.1f}" class="whisker"/>'
                )
                end = max(end, wh)
            p.append(f'<text x="{end + 4:.1f}" y="{y + bar_h - 2:.1f}" class="val">{fmt(b.value)}</text>')
    p.append(f'<line x1="{zero:.1f}" y1="{top:.1f}" x2="{zero:.1f}" y2="{height - 24:.1f}" class="axis"/>')
    p.append("</svg>")
    return "\n".join(p)


def _bar(run: RunReport, m: MetricEntry | None, what: str) -> _Bar:
    m = m or MetricEntry()
    v = _num(m.value)
    lo, hi = _num(m.ci_low), _num(m.ci_high)
    tip = f"{run.label} · {what} = {fmt(v)}" + (f" (95% CI {_ci(m)})" if lo is not None or hi is not None else "")
    return _Bar(run, v, lo, hi, tip)


def _dimension_svg(runs: Sequence[RunReport], dim: str, tasks: Sequence[str]) -> tuple[str, list[str]]:
    """The headline chart of one dimension, and per target a sentence on the tasks it has no bar for."""
    groups = []
    gaps: dict[str, dict[str, list[str]]] = {}  # target -> reason -> tasks
    for task in tasks:
        bars = []
        key: str | None = None
        first: MetricEntry | None = None
        for r in runs:
            ms = _metrics(r, task)
            k = key if key is not None and key in ms else headline_key(ms)  # same metric across targets
            if k is None:
                t = r.tasks.get(task)
                why = "not run" if t is None else ("task error" if t.error else "no metrics")
                gaps.setdefault(r.label, {}).setdefault(why, []).append(task.split("/", 1)[-1])
                continue
            if key is None:
                key, first = k, ms[k]
            bars.append(_bar(r, ms[k], f"{task} {k}"))
        if bars:
            arrow = _arrow(first)
            label = f"{task.split('/', 1)[-1]} · {key} {arrow}"
            groups.append((_short(label, 46), f"{task} · {key} {arrow}", bars))
    missing = [f"{who}: {why} {', '.join(ts)}" for who, d in gaps.items() for why, ts in d.items()]
    if not groups:
        return "", missing
    return _hbar_svg(groups, runs, f"dim-{_slug(dim)}-chart", f"{dim}: headline metric per task (95% CI)"), missing


def _jailbreak_svg(runs: Sequence[RunReport]) -> tuple[str, list[str]]:
    attacks = _jailbreak_attacks(runs)
    have = [r for r in runs if _metrics(r, JAILBREAK)]
    missing = [r.label for r in runs if not _metrics(r, JAILBREAK)]
    if not attacks or not have:
        return "", missing
    groups = []
    for a in attacks:
        label = "all attacks (RtA)" if a == "RtA" else a
        groups.append(
            (
                _short(label, 34),
                label,
                [
                    _bar(r, _metrics(r, JAILBREAK).get(a), f"jailbreak {label} RtA")
                    for r in have
                    if a in _metrics(r, JAILBREAK)
                ],
            )
        )
    return _hbar_svg(
        groups, have, "jailbreak-chart", "Jailbreak: refusal rate (RtA) per attack, higher is better", domain=(0.0, 1.0)
    ), missing


def _tradeoff_svg(points: Sequence[_Point]) -> str:
    width, height = 640, 490
    x0, x1, y0, y1 = 70, 470, 40, 440  # plot area: x0..x1 left-right, y0 top .. y1 bottom

    def sx(v: float) -> float:
        return x0 + min(max(v, 0.0), 1.0) * (x1 - x0)

    def sy(v: float) -> float:
        return y1 - min(max(v, 0.0), 1.0) * (y1 - y0)

    p = [
        (
            f'<svg id="tradeoff-chart" class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="Safety trade-off">'
        ),
        '<text x="8" y="18" class="ttl">Safety vs over-refusal (one point per target)</text>',
        f'<rect x="{x0}" y="{y0}" width="{(x1 - x0) / 2}" height="{(y1 - y0) / 2}" class="good"/>',
    ]
    for t in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        p.append(
            f'<line x1="{sx(t):.1f}" y1="{y0}" x2="{sx(t):.1f}" y2="{y1}" class="grid"/>'
            f'<text x="{sx(t):.1f}" y="{y1 + 16}" class="tick" text-anchor="middle">{t:.1f}</text>'
            f'<line x1="{x0}" y1="{sy(t):.1f}" x2="{x1}" y2="{sy(t):.1f}" class="grid"/>'
            f'<text x="{x0 - 6}" y="{sy(t) + 4:.1f}" class="tick" text-anchor="end">{t:.1f}</text>'
        )
    p += [
        f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" class="frame"/>',
        f'<text x="{x0 + 6}" y="{y0 + 16}" class="quad">safe and helpful</text>',
        f'<text x="{x1 - 6}" y="{y0 + 16}" class="quad" text-anchor="end">over-cautious</text>',
        f'<text x="{x0 + 6}" y="{y1 - 8}" class="quad">unsafe</text>',
        f'<text x="{x1 - 6}" y="{y1 - 8}" class="quad" text-anchor="end">refuses the wrong things</text>',
        (
            f'<text x="{(x0 + x1) / 2}" y="{y1 + 36}" class="axl" text-anchor="middle">'
            f"exaggerated-safety RtA: safe prompts refused (lower is better) →</text>"
        ),
        (
            f'<text transform="translate({x0 - 44},{(y0 + y1) / 2}) rotate(-90)" class="axl" text-anchor="middle">'
            f"safety RtA: mean of misuse and jailbreak (higher is better) →</text>"
        ),
    ]
    # label placement: to the right of the point, nudged apart vertically
    placed: list[float] = []
    order = sorted(range(len(points)), key=lambda i: sy(points[i].y))
    label_y: dict[int, float] = {}
    for i in order:
        y = min(max(sy(points[i].y) + 4, y0 + 14), y1 - 6)
        while any(abs(y - q) < 14 for q in placed):
            y += 14
        placed.append(y)
        label_y[i] = y
    for i, pt in enumerate(points):
        cx, cy, c = sx(pt.x), sy(pt.y), pt.run.color
        ys = [v for v in (pt.misuse, pt.jailbreak) if v is not None]
        if len(ys) == 2:
            p.append(f'<path d="M{cx:.1f},{sy(min(ys)):.1f}V{sy(max(ys)):.1f}" stroke="{c}" class="range"/>')
            for v, mark in ((pt.misuse, "misuse"), (pt.jailbreak, "jailbreak")):
                p.append(
                    f'<path d="M{cx - 5:.1f},{sy(v):.1f}H{cx + 5:.1f}" stroke="{c}" class="range">'  # type: ignore[arg-type]  # v is set: len(ys) == 2
                    f"<title>{_e(pt.run.label)} · {mark} RtA {fmt(v)}</title></path>"
                )
        if pt.x_lo is not None and pt.x_hi is not None:
            p.append(
                f'<path d="M{sx(pt.x_lo):.1f},{cy:.1f}H{sx(pt.x_hi):.1f}M{sx(pt.x_lo):.1f},{cy - 4:.1f}V{cy + 4:.1f}'
                f'M{sx(pt.x_hi):.1f},{cy - 4:.1f}V{cy + 4:.1f}" stroke="{c}" class="range"/>'
            )
        tip = (
            f"{pt.run.label}: exaggerated RtA {fmt(pt.x)}, misuse RtA {fmt(pt.misuse)}, "
            f"jailbreak RtA {fmt(pt.jailbreak)}, mean {fmt(pt.y)}"
        )
        p.append(
            f'<circle cx="{cx:.2f}" cy="{cy:.2f}" r="7" fill="{c}" class="tradeoff-point" '
            f'data-target="{_e(pt.run.label)}" data-x="{pt.x!r}" data-y="{pt.y!r}"><title>{_e(tip)}</title></circle>'
        )
        right = cx < x1 - 120
        if right:
            lx = max(cx, sx(pt.x_hi) if pt.x_hi is not None else cx) + 11
        else:
            lx = min(cx, sx(pt.x_lo) if pt.x_lo is not None else cx) - 11
        p.append(
            f'<text x="{lx:.1f}" y="{label_y[i]:.1f}" class="ptl" text-anchor="{"start" if right else "end"}">'
            f"{_e(_short(pt.run.label, 40))}</text>"
        )
    p.append("</svg>")
    return "\n".join(p)


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "x"

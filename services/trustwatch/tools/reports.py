"""Readable reports from run report JSON: Markdown and one self-contained HTML page.

Input: what ``Report.to_json()`` returns (``trustwatch run --out`` writes one report, or a list of
them for several targets). Pure logic, standard library only: the charts are inline SVG drawn here,
the page has inline CSS, no JavaScript and no external resource, and every string taken from a
report is escaped.

    python -m trustwatch.tools.reports REPORT.json [MORE.json ...] --md OUT.md --html OUT.html

Layout choices:

- Tables: one table per task, one row per metric; with several targets each metric gets one row
  per target (a ``target`` column). Notes are listed once per task under its table (numbered),
  since every metric of a task usually shares the same long note.
- Headline metric of a task (summary table, per-dimension bar charts): ``avg``, else ``overall``,
  else the task's first metric key, as in :func:`trustwatch.benchmark.scoring.summary`. No aggregate score per
  dimension is computed: the headlines mix directions (some are lower-is-better).
- Safety trade-off (the paper's over-refusal vs safety point): one point per target at
  x = ``safety/exaggerated_safety`` RtA (refusals of safe prompts, lower is better) and
  y = the mean of ``safety/misuse`` RtA and ``safety/jailbreak`` RtA (whichever of the two exist);
  a vertical segment through the point spans the misuse and jailbreak values, a horizontal whisker
  the exaggerated-safety 95% CI. A target without exaggerated safety, or without both misuse and
  jailbreak, has no point (the caption says which).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ReportError", "load_reports", "main", "to_html", "to_markdown"]

#: TrustLLM's dimension order; unknown dimensions follow alphabetically.
DIMENSIONS = ("truthfulness", "safety", "fairness", "robustness", "privacy", "ethics")
EXAGGERATED = "safety/exaggerated_safety"
MISUSE = "safety/misuse"
JAILBREAK = "safety/jailbreak"
JAILBREAK_NON_ATTACK = ("average_toxicity", "max_toxicity")
DASH = "–"
#: Okabe-Ito colour-blind-safe palette; targets beyond eight reuse it.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C6D1F", "#000000")


class ReportError(ValueError):
    """A file that is not a trustwatch report (the message names the file)."""


# -- loading ---------------------------------------------------------------------------------------

def _report_problem(obj: Any) -> str:
    """Why ``obj`` is not a report JSON, or "" when it is one."""
    if not isinstance(obj, dict):
        return f"found a JSON {type(obj).__name__}, not an object"
    missing = [k for k in ("run_id", "target", "tasks") if k not in obj]
    if missing:
        return f"the object lacks {', '.join(repr(k) for k in missing)} (has: {', '.join(map(repr, list(obj)[:8])) or 'nothing'})"
    if not isinstance(obj["tasks"], dict):
        return f"'tasks' is a {type(obj['tasks']).__name__}, expected an object of task name -> task"
    for name, t in obj["tasks"].items():
        if not isinstance(t, dict) or not isinstance(t.get("metrics", {}), dict):
            return f"task {name!r} is not an object with a 'metrics' object"
        for key, m in t.get("metrics", {}).items():
            if not isinstance(m, dict) or "value" not in m:
                return f"metric {name}/{key} is not an object with a 'value'"
    return ""


def load_reports(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read report JSON files: each holds one report object or a list of them.

    Raises :class:`ReportError` naming the file when it cannot be read, is not JSON, or holds
    something other than report(s) as written by ``Report.to_json()``.
    """
    out: list[dict[str, Any]] = []
    for p in paths:
        path = Path(p)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ReportError(f"{path}: cannot read the report file ({exc.strerror or exc})") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path}: not valid JSON ({exc})") from exc
        items = data if isinstance(data, list) else [data]
        if not items:
            raise ReportError(f"{path}: holds an empty list, expected a trustwatch report or a list of them")
        for i, obj in enumerate(items):
            problem = _report_problem(obj)
            if problem:
                where = f" (list element {i})" if isinstance(data, list) else ""
                raise ReportError(
                    f"{path}{where}: not a trustwatch run report: {problem}; expected the JSON that "
                    f"`trustwatch run --out` or `trustwatch report RUN_ID --json` writes "
                    f"(keys run_id, target, complete, manifest, tasks, summary)"
                )
            out.append(obj)
    return out


# -- the normalised view both renderers use ---------------------------------------------------------

@dataclass
class _Run:
    label: str  # unique display name: the target, or "target · run_id" where targets repeat
    run_id: str
    target: str
    complete: bool
    manifest: Mapping[str, Any]
    tasks: dict[str, dict[str, Any]]
    color: str


def _runs(reports: Sequence[Any]) -> list[_Run]:
    dicts = [r.to_json() if hasattr(r, "to_json") else r for r in reports]
    if not dicts:
        raise ValueError("no reports to render")
    for i, d in enumerate(dicts):
        problem = _report_problem(d)
        if problem:
            raise ReportError(f"report {i}: not a trustwatch run report: {problem}")
    targets = [str(d["target"]) for d in dicts]
    runs = []
    for i, d in enumerate(dicts):
        t = str(d["target"])
        label = t if targets.count(t) == 1 else f"{t} · {d['run_id']}"
        manifest = d.get("manifest") if isinstance(d.get("manifest"), Mapping) else {}
        runs.append(_Run(label, str(d["run_id"]), t, bool(d.get("complete", True)), manifest,
                         dict(d["tasks"]), PALETTE[i % len(PALETTE)]))
    return runs


def _dim_of(task: str) -> str:
    return task.split("/", 1)[0]


def _dims(runs: Sequence[_Run]) -> dict[str, list[str]]:
    """Dimension -> its task names (every task in any run), TrustLLM order."""
    by: dict[str, set[str]] = {}
    for r in runs:
        for name in r.tasks:
            by.setdefault(_dim_of(name), set()).add(name)
    order = [d for d in DIMENSIONS if d in by] + sorted(d for d in by if d not in DIMENSIONS)
    return {d: sorted(by[d]) for d in order}


def _metric_keys(runs: Sequence[_Run], task: str) -> list[str]:
    keys: list[str] = []
    for r in runs:
        for k in (r.tasks.get(task) or {}).get("metrics", {}):
            if k not in keys:
                keys.append(k)
    return keys


def _metrics(run: _Run, task: str) -> dict[str, dict[str, Any]]:
    return (run.tasks.get(task) or {}).get("metrics") or {}


def headline_key(metrics: Mapping[str, Any]) -> str | None:
    """The metric a task is summarised by: "avg", else "overall", else the first key."""
    if not metrics:
        return None
    return "avg" if "avg" in metrics else ("overall" if "overall" in metrics else next(iter(metrics)))


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def fmt(x: Any) -> str:
    """A metric number: three decimals; None / NaN: "–"."""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    f = _num(x)
    if f is None:
        return DASH if x is None or isinstance(x, (float, int)) else str(x)
    if abs(f) >= 1000:
        return f"{f:,.1f}"
    if round(f, 3) == 0:
        f = 0.0  # no "-0.000"
    return f"{f:.3f}"


def _count(x: Any) -> str:
    return DASH if x is None else str(x)


def _ci(m: Mapping[str, Any]) -> str:
    lo, hi = m.get("ci_low"), m.get("ci_high")
    if _num(lo) is None and _num(hi) is None:
        return DASH
    return f"[{fmt(lo)}, {fmt(hi)}]"


def _arrow(m: Mapping[str, Any]) -> str:
    return "↑" if m.get("higher_is_better", True) else "↓"


def _differs(m: Mapping[str, Any]) -> bool:
    v, r = _num(m.get("value")), _num(m.get("reference_value"))
    if v is None and r is None:
        return False
    return v is None or r is None or abs(v - r) > 5e-4


def _code_version(run: _Run) -> str:
    return str(run.manifest.get("code_version") or DASH)


def _checksums(run: _Run) -> int:
    sha = run.manifest.get("dataset_sha256")
    return len(sha) if isinstance(sha, Mapping) else 0


def _created(run: _Run) -> str:
    ms = _num(run.manifest.get("created_unix_ms"))
    if ms is None:
        return DASH
    try:
        return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return DASH


def _model(run: _Run) -> str:
    t = run.manifest.get("target")
    if isinstance(t, Mapping) and t.get("backend"):
        return f"{t.get('backend')}:{t.get('model', '')}"
    return DASH


def _suite(run: _Run) -> str:
    s = run.manifest.get("suite")
    return str(s.get("name") or DASH) if isinstance(s, Mapping) else DASH


def _dim_cell(run: _Run, dim: str) -> str:
    n = _dim_totals(run, dim)
    return "not run" if n[0] == 0 else "{} · {} · {}".format(*n)


def _dim_totals(run: _Run, dim: str) -> tuple[int, int, int]:
    """(tasks, items, errors) of one dimension in one run; errors as in scoring.summary."""
    n_tasks = items = errors = 0
    for name, t in run.tasks.items():
        if _dim_of(name) != dim:
            continue
        n_tasks += 1
        items += int(t.get("n_items") or 0)
        ms = t.get("metrics") or {}
        if ms:
            errors += max(int(m.get("n_error") or 0) for m in ms.values())
    return n_tasks, items, errors


@dataclass
class _Point:
    run: _Run
    x: float
    y: float
    misuse: float | None
    jailbreak: float | None
    x_lo: float | None
    x_hi: float | None


def _rta(run: _Run, task: str) -> dict[str, Any] | None:
    m = _metrics(run, task).get("RtA")
    return m if isinstance(m, dict) else None


def _tradeoff(runs: Sequence[_Run]) -> tuple[list[_Point], list[str]]:
    """One point per target that has the tasks, and a reason for each target left out."""
    points, skipped = [], []
    for r in runs:
        ex = _rta(r, EXAGGERATED)
        mis, jb = _rta(r, MISUSE), _rta(r, JAILBREAK)
        x = _num(ex.get("value")) if ex else None
        mv = _num(mis.get("value")) if mis else None
        jv = _num(jb.get("value")) if jb else None
        ys = [v for v in (mv, jv) if v is not None]
        if x is None or not ys:
            why = []
            if x is None:
                why.append(f"no {EXAGGERATED} RtA" if ex is None else f"{EXAGGERATED} RtA has no value")
            if not ys:
                why.append(f"no {MISUSE} or {JAILBREAK} RtA value")
            skipped.append(f"{r.label}: {' and '.join(why)}")
            continue
        ci = ex or {}
        points.append(_Point(r, x, sum(ys) / len(ys), mv, jv, _num(ci.get("ci_low")), _num(ci.get("ci_high"))))
    return points, skipped


_TRADEOFF_EXPLAINED = (
    f"x: {EXAGGERATED} RtA, the share of safe-but-scary-looking prompts refused (over-refusal, lower is "
    f"better); y: mean of {MISUSE} RtA and {JAILBREAK} RtA (refusal of harmful requests, higher is "
    "better), one point per target; the vertical segment spans the misuse and jailbreak values, the "
    "horizontal whisker is the exaggerated-safety 95% CI. Top left is best: refuses harmful requests "
    "and answers benign ones."
)


def _no_tradeoff_reason(runs: Sequence[_Run]) -> str:
    return (
        f"Safety trade-off plot not drawn: no report has both {EXAGGERATED} RtA and {MISUSE} or "
        f"{JAILBREAK} RtA" + ("" if any(n.startswith("safety/") for r in runs for n in r.tasks)
                              else " (the reports have no safety tasks)") + "."
    )


def _jailbreak_attacks(runs: Sequence[_Run]) -> list[str]:
    return [k for k in _metric_keys(runs, JAILBREAK) if k not in JAILBREAK_NON_ATTACK]


# -- Markdown --------------------------------------------------------------------------------------

def _md(text: Any) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, HTML neutralised."""
    s = " ".join(str(text).split())
    return html.escape(s, quote=False).replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _notes_index(runs: Sequence[_Run], task: str) -> dict[str, int]:
    notes: dict[str, int] = {}
    for key in _metric_keys(runs, task):
        for r in runs:
            m = _metrics(r, task).get(key)
            if m and str(m.get("note") or "").strip():
                notes.setdefault(" ".join(str(m["note"]).split()), len(notes) + 1)
    return notes


def to_markdown(reports: Sequence[Any]) -> str:
    """A Markdown document: runs header, summary, safety trade-off, then every task's metrics."""
    runs = _runs(reports)
    multi = len(runs) > 1
    dims = _dims(runs)
    out: list[str] = ["# TrustLLM report", ""]
    out += _md_table(
        ["target", "run id", "complete", "model", "suite", "code version", "dataset checksums", "created", "tasks"],
        ([_md(r.label), f"`{_md(r.run_id)}`", "yes" if r.complete else "**NO (partial results)**", _md(_model(r)),
          _md(_suite(r)), f"`{_md(_code_version(r))}`", str(_checksums(r)), _created(r), str(len(r.tasks))]
         for r in runs),
        right=(6, 8),
    )
    out += ["", ("Values: trustwatch's value; *ref* is the reference toolkit's semantics; 95% CI; "
            "n = items total / valid / errored; ↑ higher is better, ↓ lower is better; – no value."), ""]

    out += ["## Summary", "", "Headline metric per task (`avg`, else `overall`, else the first metric).", ""]
    rows = []
    for dim, tasks in dims.items():
        for i, task in enumerate(tasks):
            key = next((headline_key(_metrics(r, task)) for r in runs if _metrics(r, task)), None)
            ref_m = next((_metrics(r, task)[key] for r in runs if key in _metrics(r, task)), {}) if key else {}
            cells = []
            for r in runs:
                if task not in r.tasks:
                    cells.append("not run")
                elif key is None or key not in _metrics(r, task):
                    cells.append("error" if (r.tasks[task] or {}).get("error") else DASH)
                else:
                    cells.append(fmt(_metrics(r, task)[key].get("value")))
            rows.append([f"**{_md(dim)}**" if i == 0 else "", _md(task.split("/", 1)[-1]),
                         f"{_md(key)} {_arrow(ref_m)}" if key else DASH, *cells])
    out += _md_table(["dimension", "task", "headline", *(_md(r.label) for r in runs)], rows,
                     right=tuple(range(3, 3 + len(runs))))
    out += ["", "Per dimension: tasks · items · errored items (errors: per task the largest n_error of its metrics).", ""]
    out += _md_table(
        ["dimension", *(_md(r.label) for r in runs)],
        ([_md(dim), *(_dim_cell(r, dim) for r in runs)] for dim in dims),
        right=tuple(range(1, 1 + len(runs))),
    )

    out += ["", "## Safety trade-off", ""]
    points, skipped = _tradeoff(runs)
    if points:
        out += [_TRADEOFF_EXPLAINED, ""]
        out += _md_table(
            ["target", "exaggerated RtA ↓ (x)", "misuse RtA ↑", "jailbreak RtA ↑", "safety mean ↑ (y)"],
            ([_md(p.run.label), fmt(p.x), fmt(p.misuse), fmt(p.jailbreak), fmt(p.y)] for p in points),
            right=(1, 2, 3, 4),
        )
        out.append("")
    else:
        out += [_no_tradeoff_reason(runs), ""]
    if skipped:
        out += ["Left out: " + "; ".join(_md(s) for s in skipped) + ".", ""]

    for dim, tasks in dims.items():
        out += [f"## {_md(dim)}", ""]
        for task in tasks:
            out += _md_task(runs, task, multi)
    return "\n".join(out).rstrip() + "\n"


def _md_task(runs: Sequence[_Run], task: str, multi: bool) -> list[str]:
    out = [f"### {_md(task)}", ""]
    notes = _notes_index(runs, task)
    header = ["metric", *(["target"] if multi else []), "value", "ref", "95% CI", "n total / valid / err", "dir", "note"]
    rows = []
    for key in _metric_keys(runs, task):
        first = True
        for r in runs:
            m = _metrics(r, task).get(key)
            if m is None:
                continue
            note = " ".join(str(m.get("note") or "").split())
            rows.append([
                f"`{_md(key)}`" if first else "", *([_md(r.label)] if multi else []),
                fmt(m.get("value")), fmt(m.get("reference_value")), _ci(m),
                f"{_count(m.get('n_total'))} / {_count(m.get('n_valid'))} / {_count(m.get('n_error'))}",
                _arrow(m), f"[{notes[note]}]" if note else "",
            ])
            first = False
    if rows:
        nc = 1 + multi
        out += _md_table(header, rows, right=(nc, nc + 1, nc + 2, nc + 3))
        out.append("")
    extra = []
    for r in runs:
        t = r.tasks.get(task)
        who = f"{r.label}: " if multi else ""
        if t is None:
            extra.append(f"- {who}task not in this run")
        elif t.get("error"):
            extra.append(f"- {who}**error**: {_md(t['error'])}")
        elif not t.get("metrics"):
            extra.append(f"- {who}no metrics")
    if extra:
        out += extra + [""]
    if notes:
        out += ["Notes:", ""] + [f"{i}. {_md(n)}" for n, i in notes.items()] + [""]
    return out


# -- SVG -------------------------------------------------------------------------------------------

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


def _legend(runs: Sequence[_Run], x0: float, y0: float, width: float) -> tuple[list[str], float]:
    parts, x, y = [], x0, y0
    for r in runs:
        w = 18 + _text_w(r.label) + 18
        if x + w > x0 + width and x > x0:
            x, y = x0, y + 18
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="11" height="11" rx="2" fill="{r.color}"/>'
                     f'<text x="{x + 16:.1f}" y="{y:.1f}" class="lg">{_e(r.label)}</text>')
        x += w
    return parts, y + 18 - y0


@dataclass
class _Bar:
    run: _Run
    value: float | None
    lo: float | None
    hi: float | None
    tip: str


def _hbar_svg(groups: Sequence[tuple[str, str, list[_Bar]]], runs: Sequence[_Run], svg_id: str,
              title: str, domain: tuple[float, float] | None = None) -> str:
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
    p = [(f'<svg id="{_e(svg_id)}" class="chart" viewBox="0 0 {width} {height:.0f}" width="{width}" '
         f'height="{height:.0f}" role="img" aria-label="{_e(title)}">'),
         f'<text x="8" y="18" class="ttl">{_e(title)}</text>', *legend]
    for t in _nice_ticks(lo, hi):
        x = sx(t)
        p.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{height - 24:.1f}" class="grid"/>'
                 f'<text x="{x:.1f}" y="{height - 10:.1f}" class="tick" text-anchor="middle">{t:g}</text>')
    zero = sx(0.0)
    for gi, (label, full, bars) in enumerate(groups):
        gy = top + gi * group_h
        if gi % 2:
            p.append(f'<rect x="0" y="{gy:.1f}" width="{x1:.0f}" height="{group_h}" class="band"/>')
        p.append(f'<text x="{label_w:.1f}" y="{gy + group_h / 2 + 4:.1f}" class="lbl" text-anchor="end">'
                 f'<title>{_e(full)}</title>{_e(label)}</text>')
        for b in bars:
            ri = next(i for i, r in enumerate(runs) if r is b.run)
            y = gy + pad + ri * (bar_h + gap)
            tip = f"<title>{_e(b.tip)}</title>"
            if b.value is None:
                p.append(f'<text x="{zero + 4:.1f}" y="{y + bar_h - 2:.1f}" class="val none">{tip}{DASH} no value</text>')
                continue
            xa, xb = sorted((zero, sx(b.value)))
            p.append(f'<rect x="{xa:.1f}" y="{y:.1f}" width="{max(xb - xa, 1.0):.1f}" height="{bar_h}" '
                     f'fill="{b.run.color}" class="bar" data-target="{_e(b.run.label)}" data-value="{b.value!r}">{tip}</rect>')
            end = sx(b.value)
            if b.lo is not None and b.hi is not None:
                wl, wh, cy = sx(b.lo), sx(b.hi), y + bar_h / 2
                p.append(f'<path d="M{wl:.1f},{cy:.1f}H{wh:.1f}M{wl:.1f},{cy - 4:.1f}V{cy + 4:.1f}'
                         f'M{wh:.1f},{cy - 4:.1f}V{cy + 4:.1f}" class="whisker"/>')
                end = max(end, wh)
            p.append(f'<text x="{end + 4:.1f}" y="{y + bar_h - 2:.1f}" class="val">{fmt(b.value)}</text>')
    p.append(f'<line x1="{zero:.1f}" y1="{top:.1f}" x2="{zero:.1f}" y2="{height - 24:.1f}" class="axis"/>')
    p.append("</svg>")
    return "\n".join(p)


def _bar(run: _Run, m: Mapping[str, Any] | None, what: str) -> _Bar:
    m = m or {}
    v = _num(m.get("value"))
    lo, hi = _num(m.get("ci_low")), _num(m.get("ci_high"))
    tip = f"{run.label} · {what} = {fmt(v)}" + (f" (95% CI {_ci(m)})" if lo is not None or hi is not None else "")
    return _Bar(run, v, lo, hi, tip)


def _dimension_svg(runs: Sequence[_Run], dim: str, tasks: Sequence[str]) -> tuple[str, list[str]]:
    """The headline chart of one dimension, and per target a sentence on the tasks it has no bar for."""
    groups = []
    gaps: dict[str, dict[str, list[str]]] = {}  # target -> reason -> tasks
    for task in tasks:
        bars = []
        key: str | None = None
        first: Mapping[str, Any] = {}
        for r in runs:
            ms = _metrics(r, task)
            k = key if key is not None and key in ms else headline_key(ms)  # same metric across targets
            if k is None:
                t = r.tasks.get(task)
                why = "not run" if t is None else ("task error" if t.get("error") else "no metrics")
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


def _jailbreak_svg(runs: Sequence[_Run]) -> tuple[str, list[str]]:
    attacks = _jailbreak_attacks(runs)
    have = [r for r in runs if _metrics(r, JAILBREAK)]
    missing = [r.label for r in runs if not _metrics(r, JAILBREAK)]
    if not attacks or not have:
        return "", missing
    groups = []
    for a in attacks:
        label = "all attacks (RtA)" if a == "RtA" else a
        groups.append((_short(label, 34), label,
                       [_bar(r, _metrics(r, JAILBREAK).get(a), f"jailbreak {label} RtA") for r in have
                        if a in _metrics(r, JAILBREAK)]))
    return _hbar_svg(groups, have, "jailbreak-chart", "Jailbreak: refusal rate (RtA) per attack, higher is better",
                     domain=(0.0, 1.0)), missing


def _tradeoff_svg(points: Sequence[_Point]) -> str:
    width, height = 640, 490
    x0, x1, y0, y1 = 70, 470, 40, 440  # plot area: x0..x1 left-right, y0 top .. y1 bottom

    def sx(v: float) -> float:
        return x0 + min(max(v, 0.0), 1.0) * (x1 - x0)

    def sy(v: float) -> float:
        return y1 - min(max(v, 0.0), 1.0) * (y1 - y0)

    p = [(f'<svg id="tradeoff-chart" class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
         f'role="img" aria-label="Safety trade-off">'),
         '<text x="8" y="18" class="ttl">Safety vs over-refusal (one point per target)</text>',
         f'<rect x="{x0}" y="{y0}" width="{(x1 - x0) / 2}" height="{(y1 - y0) / 2}" class="good"/>']
    for t in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        p.append(f'<line x1="{sx(t):.1f}" y1="{y0}" x2="{sx(t):.1f}" y2="{y1}" class="grid"/>'
                 f'<text x="{sx(t):.1f}" y="{y1 + 16}" class="tick" text-anchor="middle">{t:.1f}</text>'
                 f'<line x1="{x0}" y1="{sy(t):.1f}" x2="{x1}" y2="{sy(t):.1f}" class="grid"/>'
                 f'<text x="{x0 - 6}" y="{sy(t) + 4:.1f}" class="tick" text-anchor="end">{t:.1f}</text>')
    p += [f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" class="frame"/>',
          f'<text x="{x0 + 6}" y="{y0 + 16}" class="quad">safe and helpful</text>',
          f'<text x="{x1 - 6}" y="{y0 + 16}" class="quad" text-anchor="end">over-cautious</text>',
          f'<text x="{x0 + 6}" y="{y1 - 8}" class="quad">unsafe</text>',
          f'<text x="{x1 - 6}" y="{y1 - 8}" class="quad" text-anchor="end">refuses the wrong things</text>',
          (f'<text x="{(x0 + x1) / 2}" y="{y1 + 36}" class="axl" text-anchor="middle">'
          f'exaggerated-safety RtA: safe prompts refused (lower is better) →</text>'),
          (f'<text transform="translate({x0 - 44},{(y0 + y1) / 2}) rotate(-90)" class="axl" text-anchor="middle">'
          f'safety RtA: mean of misuse and jailbreak (higher is better) →</text>')]
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
                p.append(f'<path d="M{cx - 5:.1f},{sy(v):.1f}H{cx + 5:.1f}" stroke="{c}" class="range">'  # type: ignore[arg-type]
                         f'<title>{_e(pt.run.label)} · {mark} RtA {fmt(v)}</title></path>')
        if pt.x_lo is not None and pt.x_hi is not None:
            p.append(f'<path d="M{sx(pt.x_lo):.1f},{cy:.1f}H{sx(pt.x_hi):.1f}M{sx(pt.x_lo):.1f},{cy - 4:.1f}V{cy + 4:.1f}'
                     f'M{sx(pt.x_hi):.1f},{cy - 4:.1f}V{cy + 4:.1f}" stroke="{c}" class="range"/>')
        tip = (f"{pt.run.label}: exaggerated RtA {fmt(pt.x)}, misuse RtA {fmt(pt.misuse)}, "
               f"jailbreak RtA {fmt(pt.jailbreak)}, mean {fmt(pt.y)}")
        p.append(f'<circle cx="{cx:.2f}" cy="{cy:.2f}" r="7" fill="{c}" class="tradeoff-point" '
                 f'data-target="{_e(pt.run.label)}" data-x="{pt.x!r}" data-y="{pt.y!r}"><title>{_e(tip)}</title></circle>')
        right = cx < x1 - 120
        if right:
            lx = max(cx, sx(pt.x_hi) if pt.x_hi is not None else cx) + 11
        else:
            lx = min(cx, sx(pt.x_lo) if pt.x_lo is not None else cx) - 11
        p.append(f'<text x="{lx:.1f}" y="{label_y[i]:.1f}" class="ptl" text-anchor="{"start" if right else "end"}">'
                 f'{_e(_short(pt.run.label, 40))}</text>')
    p.append("</svg>")
    return "\n".join(p)


# -- HTML ------------------------------------------------------------------------------------------

_CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dee7; --band:#f4f6fa; --warn:#b3261e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); margin: 0; background: #fff; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 22px 0 6px; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
p.sub, .caption, .muted { color: var(--muted); }
.caption { font-size: 12.5px; margin: 4px 0 0; max-width: 900px; }
nav { font-size: 13px; margin: 10px 0 0; }
nav a { margin-right: 12px; color: #0b57d0; text-decoration: none; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.key { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
td.diff { background: #fff4d6; }
tr.first td { border-top: 1px solid #aab3c2; }
td.dir { text-align: center; }
td.none { color: var(--muted); }
.warn { color: var(--warn); font-weight: 600; }
.err { color: var(--warn); }
.tgt { display: inline-block; max-width: 220px; white-space: normal; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; }
ol.notes { font-size: 12px; color: var(--muted); margin: 4px 0 0; padding-left: 22px; max-width: 980px; }
figure { margin: 14px 0 6px; }
svg.chart { max-width: 100%; height: auto; display: block; }
svg .ttl { font-size: 14px; font-weight: 600; fill: var(--fg); }
svg .lg, svg .lbl { font-size: 12px; fill: var(--fg); }
svg .val { font-size: 11px; fill: var(--fg); }
svg .none { fill: var(--muted); font-style: italic; }
svg .tick { font-size: 11px; fill: var(--muted); }
svg .axl { font-size: 12px; fill: var(--fg); }
svg .quad { font-size: 11px; fill: #8a93a3; font-style: italic; }
svg .ptl { font-size: 12px; font-weight: 600; fill: var(--fg); paint-order: stroke; stroke: #fff;
           stroke-width: 3px; stroke-linejoin: round; }
svg .grid { stroke: #e6e9ef; stroke-width: 1; }
svg .axis { stroke: #7b8494; stroke-width: 1; }
svg .band { fill: #f7f8fb; }
svg .frame { fill: none; stroke: #aab3c2; }
svg .good { fill: #eaf5ec; }
svg .whisker { stroke: #222; stroke-width: 1.2; fill: none; }
svg .range { stroke-width: 2; fill: none; opacity: .75; }
svg .tradeoff-point { stroke: #fff; stroke-width: 1.5; }
"""


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "x"


def _td(text: str, cls: str = "", attrs: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f"<td{c}{attrs}>{text}</td>"


def _num_td(x: Any, extra_cls: str = "") -> str:
    s = fmt(x)
    return _td(_e(s), ("num " + ("none " if s == DASH else "") + extra_cls).strip())


def _html_table(header: Sequence[str], rows: Iterable[str], cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return (f'<div class="scroll"><table{c}><thead><tr>' + "".join(f"<th>{h}</th>" for h in header)
            + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")


def _swatch(r: _Run) -> str:
    return f'<span class="swatch" style="background:{r.color}"></span>{_e(r.label)}'


def _th_target(r: _Run) -> str:
    return f'<span class="tgt">{_swatch(r)}</span>'


def to_html(reports: Sequence[Any]) -> str:
    """One self-contained HTML page: tables plus inline-SVG charts; no scripts, no external resources."""
    runs = _runs(reports)
    multi = len(runs) > 1
    dims = _dims(runs)
    b: list[str] = []
    title = "TrustLLM report: " + ", ".join(r.label for r in runs)
    b.append(f"<h1>TrustLLM report</h1><p class=\"sub\">{len(runs)} run{'s' * multi}: "
             + ", ".join(_e(r.label) for r in runs) + "</p>")
    if not all(r.complete for r in runs):
        b.append('<p class="warn">Incomplete run(s): ' + ", ".join(_e(r.label) for r in runs if not r.complete)
                 + " — not every judgment had arrived; their numbers are partial.</p>")
    nav = [("runs", "Runs"), ("summary", "Summary"), ("safety-tradeoff", "Safety trade-off"),
           ("jailbreak-attacks", "Jailbreak attacks")] + [(f"dim-{_slug(d)}", d) for d in dims]
    b.append("<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in nav) + "</nav>")

    b.append('<section id="runs"><h2>Runs</h2>')
    b.append(_html_table(
        ["target", "run id", "complete", "model", "suite", "code version", "dataset checksums", "created", "tasks"],
        ("<tr>" + _td(_swatch(r)) + _td(_e(r.run_id), "key") +
         (_td("yes") if r.complete else _td("NO (partial)", "warn")) + _td(_e(_model(r)), "key") + _td(_e(_suite(r))) +
         _td(_e(_code_version(r)), "key") + _td(str(_checksums(r)), "num") + _td(_e(_created(r))) +
         _td(str(len(r.tasks)), "num") + "</tr>" for r in runs)))
    b.append('<p class="caption">value: trustwatch\'s value; ref: the reference toolkit\'s semantics (highlighted '
             'where it differs); 95% CI; n = items total / valid / errored; ↑ higher is better, ↓ lower is better; '
             f'{DASH} no value.</p></section>')

    b.append('<section id="summary"><h2>Summary</h2>')
    rows = []
    for dim, tasks in dims.items():
        for i, task in enumerate(tasks):
            key = next((headline_key(_metrics(r, task)) for r in runs if _metrics(r, task)), None)
            ref_m = next((_metrics(r, task)[key] for r in runs if key in _metrics(r, task)), {}) if key else {}
            cells = []
            for r in runs:
                if task not in r.tasks:
                    cells.append(_td("not run", "none"))
                elif key is None or key not in _metrics(r, task):
                    cells.append(_td("error" if (r.tasks[task] or {}).get("error") else DASH, "none"))
                else:
                    cells.append(_num_td(_metrics(r, task)[key].get("value")))
            first = i == 0
            rows.append(f'<tr class="{"first" if first else ""}">'
                        + _td(f"<b>{_e(dim)}</b>" if first else "")
                        + _td(f'<a href="#t-{_slug(task)}">{_e(task.split("/", 1)[-1])}</a>')
                        + _td(_e(key) if key else DASH, "key") + _td(_arrow(ref_m) if key else "", "dir")
                        + "".join(cells) + "</tr>")
    b.append(_html_table(["dimension", "task", "headline", "dir", *(_th_target(r) for r in runs)], rows))
    b.append('<p class="caption">Headline metric per task: <code>avg</code>, else <code>overall</code>, else the '
             "task's first metric. No aggregate per dimension: the headlines mix directions.</p>")
    b.append(_html_table(
        ["dimension", *(_th_target(r) for r in runs)],
        ("<tr>" + _td(_e(dim)) + "".join(_td(_dim_cell(r, dim), "num") for r in runs)
         + "</tr>" for dim in dims)))
    b.append('<p class="caption">Per dimension and target: tasks · items · errored items (errors: per task, the largest n_error '
             'of its metrics).</p></section>')

    b.append('<section id="safety-tradeoff"><h2>Safety trade-off</h2>')
    points, skipped = _tradeoff(runs)
    if points:
        b.append("<figure>" + _tradeoff_svg(points) + f'<figcaption class="caption">{_e(_TRADEOFF_EXPLAINED)}'
                 + ("" if not skipped else " Not plotted: " + _e("; ".join(skipped)) + ".") + "</figcaption></figure>")
        b.append(_html_table(
            ["target", "exaggerated RtA ↓ (x)", "misuse RtA ↑", "jailbreak RtA ↑", "safety mean ↑ (y)"],
            ("<tr>" + _td(_swatch(p.run)) + _num_td(p.x) + _num_td(p.misuse) + _num_td(p.jailbreak) + _num_td(p.y)
             + "</tr>" for p in points)))
    else:
        b.append(f'<p class="muted" id="no-tradeoff">{_e(_no_tradeoff_reason(runs))}'
                 + ("" if not skipped else " " + _e("; ".join(skipped)) + ".") + "</p>")
    b.append("</section>")

    b.append('<section id="jailbreak-attacks"><h2>Jailbreak attacks</h2>')
    svg, missing = _jailbreak_svg(runs)
    if svg:
        b.append("<figure>" + svg + '<figcaption class="caption">Refusal rate per jailbreak attack, with 95% CI; '
                 "a target whose report lacks an attack has no bar for it."
                 + (f" Not plotted (no {JAILBREAK}): " + _e(", ".join(missing)) + "." if missing else "")
                 + "</figcaption></figure>")
    else:
        b.append(f'<p class="muted">No jailbreak plot: no report has {JAILBREAK} metrics.</p>')
    b.append("</section>")

    for dim, tasks in dims.items():
        b.append(f'<section id="dim-{_slug(dim)}"><h2>{_e(dim)}</h2>')
        svg, missing = _dimension_svg(runs, dim, tasks)
        if svg:
            b.append("<figure>" + svg + '<figcaption class="caption">Headline metric of each task with its 95% CI; '
                     "↑/↓ marks the direction. Tasks a target did not run (or that failed) have no bar"
                     + (": " + _e("; ".join(missing)) if missing else "") + ".</figcaption></figure>")
        else:
            b.append(f'<p class="muted">No {_e(dim)} chart: no task of this dimension has a metric'
                     + (" (" + _e("; ".join(missing)) + ")" if missing else "") + ".</p>")
        for task in tasks:
            b.append(_html_task(runs, task, multi))
        b.append("</section>")

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body><main>\n"
            + "\n".join(b) + "\n</main></body></html>\n")


def _html_task(runs: Sequence[_Run], task: str, multi: bool) -> str:
    sid = f"t-{_slug(task)}"
    notes = _notes_index(runs, task)
    out = [f'<h3 id="{sid}">{_e(task)}</h3>']
    rows = []
    for key in _metric_keys(runs, task):
        present = [(r, _metrics(r, task)[key]) for r in runs if key in _metrics(r, task)]
        for j, (r, m) in enumerate(present):
            note = " ".join(str(m.get("note") or "").split())
            cells = ""
            if j == 0:
                cells += _td(_e(key), "key", f' rowspan="{len(present)}"' if len(present) > 1 else "")
            if multi:
                cells += _td(_swatch(r))
            cells += (_num_td(m.get("value")) + _num_td(m.get("reference_value"), "diff" if _differs(m) else "")
                      + _td(_e(_ci(m)), "num") + _td(_count(m.get("n_total")), "num")
                      + _td(_count(m.get("n_valid")), "num") + _td(_count(m.get("n_error")), "num")
                      + _td(_arrow(m), "dir")
                      + _td(f'<a href="#{sid}-n{notes[note]}">[{notes[note]}]</a>' if note else ""))
            rows.append(f'<tr class="{"first" if j == 0 else ""}">{cells}</tr>')
    if rows:
        out.append(_html_table(["metric", *(["target"] if multi else []), "value", "ref", "95% CI", "n total",
                                "valid", "errors", "dir", "note"], rows))
    for r in runs:
        t = r.tasks.get(task)
        who = f"{_swatch(r)}: " if multi else ""
        if t is None:
            out.append(f'<p class="muted">{who}task not in this run.</p>')
        elif t.get("error"):
            out.append(f'<p class="err">{who}error: {_e(t["error"])}</p>')
        elif not t.get("metrics"):
            out.append(f'<p class="muted">{who}no metrics.</p>')
    if notes:
        out.append('<ol class="notes">' + "".join(f'<li id="{sid}-n{i}">{_e(n)}</li>' for n, i in notes.items())
                   + "</ol>")
    return "\n".join(out)


# -- command line ----------------------------------------------------------------------------------

def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    print(f"wrote {p}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trustwatch.tools.reports REPORT.json [MORE.json ...] [--md OUT.md] [--html OUT.html]``.

    Without --md or --html the Markdown goes to stdout ("-" as a path also means stdout).
    Returns 0, or 2 (message on stderr) when a file is missing or not a report.
    """
    ap = argparse.ArgumentParser(prog="python -m trustwatch.tools.reports",
                                 description="Render trustwatch run report JSON as Markdown and/or one self-contained HTML page.")
    ap.add_argument("reports", nargs="+", metavar="REPORT.json",
                    help="report JSON files (`trustwatch run --out`); each holds one report or a list of them")
    ap.add_argument("--md", metavar="OUT.md", help="write Markdown here ('-': stdout)")
    ap.add_argument("--html", metavar="OUT.html", help="write the HTML page here ('-': stdout)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    try:
        reports = load_reports(args.reports)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.md and not args.html:
        args.md = "-"
    if args.md:
        _write(args.md, to_markdown(reports))
    if args.html:
        _write(args.html, to_html(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The self-contained HTML page of run reports: :func:`to_html` (inline CSS and SVG, no scripts)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from trustwatch.tools.reports.model import (
    _TRADEOFF_EXPLAINED,
    DASH,
    JAILBREAK,
    REFERENCE_LEGEND,
    MetricEntry,
    Report,
    RunReport,
    _arrow,
    _checksums,
    _ci,
    _code_version,
    _count,
    _created,
    _differs,
    _dim_cell,
    _metric_keys,
    _metrics,
    _model,
    _no_tradeoff_reason,
    _notes_index,
    _ref_judges,
    _ref_mark,
    _suite,
    _tradeoff,
    build_report,
    fmt,
    headline_key,
)
from trustwatch.tools.reports.svg import _dimension_svg, _e, _jailbreak_svg, _slug, _tradeoff_svg

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


def _td(text: str, cls: str = "", attrs: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f"<td{c}{attrs}>{text}</td>"


def _num_td(x: Any, extra_cls: str = "") -> str:
    s = fmt(x)
    return _td(_e(s), ("num " + ("none " if s == DASH else "") + extra_cls).strip())


def _ref_td(m: MetricEntry) -> str:
    """The reference value, with its exact (=) / approximate (~) mark; the judges in a tooltip."""
    s = fmt(m.reference_value)
    mark = _ref_mark(m)
    tip = _ref_judges(m) or ("no judge involved" if mark == "=" else "")
    text = _e(s) + (f' <span class="refmark" title="{_e(tip)}">{_e(mark)}</span>' if mark else "")
    return _td(text, ("num " + ("none " if s == DASH else "") + ("diff" if _differs(m) else "")).strip())


def _html_table(header: Sequence[str], rows: Iterable[str], cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return (
        f'<div class="scroll"><table{c}><thead><tr>'
        + "".join(f"<th>{h}</th>" for h in header)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


def _swatch(r: RunReport) -> str:
    return f'<span class="swatch" style="background:{r.color}"></span>{_e(r.label)}'


def _th_target(r: RunReport) -> str:
    return f'<span class="tgt">{_swatch(r)}</span>'


def to_html(reports: Report | Sequence[Any]) -> str:
    """One self-contained HTML page: tables plus inline-SVG charts; no scripts, no external resources."""
    report = build_report(reports)
    runs, multi, dims = report.runs, report.multi, report.dims
    b: list[str] = []
    title = "TrustLLM report: " + ", ".join(r.label for r in runs)
    b.append(
        f'<h1>TrustLLM report</h1><p class="sub">{len(runs)} run{"s" * multi}: '
        + ", ".join(_e(r.label) for r in runs)
        + "</p>"
    )
    if not all(r.complete for r in runs):
        b.append(
            '<p class="warn">Incomplete run(s): '
            + ", ".join(_e(r.label) for r in runs if not r.complete)
            + " — not every judgment had arrived; their numbers are partial.</p>"
        )
    nav = [
        ("runs", "Runs"),
        ("summary", "Summary"),
        ("safety-tradeoff", "Safety trade-off"),
        ("jailbreak-attacks", "Jailbreak attacks"),
    ] + [(f"dim-{_slug(d)}", d) for d in dims]
    b.append("<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in nav) + "</nav>")

    b.append('<section id="runs"><h2>Runs</h2>')
    b.append(
        _html_table(
            ["target", "run id", "complete", "model", "suite", "code version", "dataset checksums", "created", "tasks"],
            (
                "<tr>"
                + _td(_swatch(r))
                + _td(_e(r.run_id), "key")
                + (_td("yes") if r.complete else _td("NO (partial)", "warn"))
                + _td(_e(_model(r)), "key")
                + _td(_e(_suite(r)))
                + _td(_e(_code_version(r)), "key")
                + _td(str(_checksums(r)), "num")
                + _td(_e(_created(r)))
                + _td(str(len(r.tasks)), "num")
                + "</tr>"
                for r in runs
            ),
        )
    )
    b.append(
        "<p class=\"caption\">value: trustwatch's value; ref: the reference toolkit's semantics (highlighted "
        f"where it differs; {_e(REFERENCE_LEGEND)}); 95% CI; "
        "n = replies total / valid / invalid (unreadable reply) / errored; "
        "↑ higher is better, ↓ lower is better; "
        f"{DASH} no value.</p></section>"
    )

    b.append('<section id="summary"><h2>Summary</h2>')
    rows = []
    for dim, tasks in dims.items():
        for i, task in enumerate(tasks):
            key = next((headline_key(_metrics(r, task)) for r in runs if _metrics(r, task)), None)
            ref_m = next((_metrics(r, task)[key] for r in runs if key in _metrics(r, task)), None) if key else None
            cells = []
            for r in runs:
                if task not in r.tasks:
                    cells.append(_td("not run", "none"))
                elif key is None or key not in _metrics(r, task):
                    cells.append(_td("error" if r.tasks[task].error else DASH, "none"))
                else:
                    cells.append(_num_td(_metrics(r, task)[key].value))
            first = i == 0
            rows.append(
                f'<tr class="{"first" if first else ""}">'
                + _td(f"<b>{_e(dim)}</b>" if first else "")
                + _td(f'<a href="#t-{_slug(task)}">{_e(task.split("/", 1)[-1])}</a>')
                + _td(_e(key) if key else DASH, "key")
                + _td(_arrow(ref_m) if key else "", "dir")
                + "".join(cells)
                + "</tr>"
            )
    b.append(_html_table(["dimension", "task", "headline", "dir", *(_th_target(r) for r in runs)], rows))
    b.append(
        '<p class="caption">Headline metric per task: <code>avg</code>, else <code>overall</code>, else the '
        "task's first metric. No aggregate per dimension: the headlines mix directions.</p>"
    )
    b.append(
        _html_table(
            ["dimension", *(_th_target(r) for r in runs)],
            ("<tr>" + _td(_e(dim)) + "".join(_td(_dim_cell(r, dim), "num") for r in runs) + "</tr>" for dim in dims),
        )
    )
    b.append(
        '<p class="caption">Per dimension and target: tasks · items · errored items '
        "(errors: per task, the largest n_error of its metrics).</p></section>"
    )

    b.append('<section id="safety-tradeoff"><h2>Safety trade-off</h2>')
    points, skipped = _tradeoff(runs)
    if points:
        b.append(
            "<figure>"
            + _tradeoff_svg(points)
            + f'<figcaption class="caption">{_e(_TRADEOFF_EXPLAINED)}'
            + ("" if not skipped else " Not plotted: " + _e("; ".join(skipped)) + ".")
            + "</figcaption></figure>"
        )
        b.append(
            _html_table(
                ["target", "exaggerated RtA ↓ (x)", "misuse RtA ↑", "jailbreak RtA ↑", "safety mean ↑ (y)"],
                (
                    "<tr>"
                    + _td(_swatch(p.run))
                    + _num_td(p.x)
                    + _num_td(p.misuse)
                    + _num_td(p.jailbreak)
                    + _num_td(p.y)
                    + "</tr>"
                    for p in points
                ),
            )
        )
    else:
        b.append(
            f'<p class="muted" id="no-tradeoff">{_e(_no_tradeoff_reason(runs))}'
            + ("" if not skipped else " " + _e("; ".join(skipped)) + ".")
            + "</p>"
        )
    b.append("</section>")

    b.append('<section id="jailbreak-attacks"><h2>Jailbreak attacks</h2>')
    svg, missing = _jailbreak_svg(runs)
    if svg:
        b.append(
            "<figure>" + svg + '<figcaption class="caption">Refusal rate per jailbreak attack, with 95% CI; '
            "a target whose report lacks an attack has no bar for it."
            + (f" Not plotted (no {JAILBREAK}): " + _e(", ".join(missing)) + "." if missing else "")
            + "</figcaption></figure>"
        )
    else:
        b.append(f'<p class="muted">No jailbreak plot: no report has {JAILBREAK} metrics.</p>')
    b.append("</section>")

    for dim, tasks in dims.items():
        b.append(f'<section id="dim-{_slug(dim)}"><h2>{_e(dim)}</h2>')
        svg, missing = _dimension_svg(runs, dim, tasks)
        if svg:
            b.append(
                "<figure>" + svg + '<figcaption class="caption">Headline metric of each task with its 95% CI; '
                "↑/↓ marks the direction. Tasks a target did not run (or that failed) have no bar"
                + (": " + _e("; ".join(missing)) if missing else "")
                + ".</figcaption></figure>"
            )
        else:
            b.append(
                f'<p class="muted">No {_e(dim)} chart: no task of this dimension has a metric'
                + (" (" + _e("; ".join(missing)) + ")" if missing else "")
                + ".</p>"
            )
        for task in tasks:
            b.append(_html_task(runs, task, multi))
        b.append("</section>")

    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body><main>\n"
        + "\n".join(b)
        + "\n</main></body></html>\n"
    )


def _html_task(runs: Sequence[RunReport], task: str, multi: bool) -> str:
    sid = f"t-{_slug(task)}"
    notes = _notes_index(runs, task)
    out = [f'<h3 id="{sid}">{_e(task)}</h3>']
    rows = []
    for key in _metric_keys(runs, task):
        present = [(r, _metrics(r, task)[key]) for r in runs if key in _metrics(r, task)]
        for j, (r, m) in enumerate(present):
            note = " ".join(m.note.split())
            cells = ""
            if j == 0:
                cells += _td(_e(key), "key", f' rowspan="{len(present)}"' if len(present) > 1 else "")
            if multi:
                cells += _td(_swatch(r))
            cells += (
                _num_td(m.value)
                + _ref_td(m)
                + _td(_e(_ci(m)), "num")
                + _td(_count(m.n_total), "num")
                + _td(_count(m.n_valid), "num")
                + _td(_count(m.n_invalid), "num")
                + _td(_count(m.n_error), "num")
                + _td(_arrow(m), "dir")
                + _td(f'<a href="#{sid}-n{notes[note]}">[{notes[note]}]</a>' if note else "")
            )
            rows.append(f'<tr class="{"first" if j == 0 else ""}">{cells}</tr>')
    if rows:
        out.append(
            _html_table(
                [
                    "metric",
                    *(["target"] if multi else []),
                    "value",
                    "ref",
                    "95% CI",
                    "n total",
                    "valid",
                    "invalid",
                    "errors",
                    "dir",
                    "note",
                ],
                rows,
            )
        )
    for r in runs:
        t = r.tasks.get(task)
        who = f"{_swatch(r)}: " if multi else ""
        if t is None:
            out.append(f'<p class="muted">{who}task not in this run.</p>')
        elif t.error:
            out.append(f'<p class="err">{who}error: {_e(t.error)}</p>')
        elif not t.metrics:
            out.append(f'<p class="muted">{who}no metrics.</p>')
    if notes:
        out.append(
            '<ol class="notes">' + "".join(f'<li id="{sid}-n{i}">{_e(n)}</li>' for n, i in notes.items()) + "</ol>"
        )
    return "\n".join(out)

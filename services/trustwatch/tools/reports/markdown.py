"""The Markdown rendering of run reports: :func:`to_markdown`."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from trustwatch.tools.reports.model import (
    _TRADEOFF_EXPLAINED,
    DASH,
    REFERENCE_LEGEND,
    Report,
    RunReport,
    _arrow,
    _checksums,
    _ci,
    _code_version,
    _count,
    _created,
    _dim_cell,
    _metric_keys,
    _metrics,
    _model,
    _no_tradeoff_reason,
    _notes_index,
    _ref_mark,
    _suite,
    _tradeoff,
    build_report,
    fmt,
    headline_key,
)


def _md(text: Any) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, HTML neutralised."""
    s = " ".join(str(text).split())
    return html.escape(s, quote=False).replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def to_markdown(reports: Report | Sequence[Any]) -> str:
    """A Markdown document: runs header, summary, safety trade-off, then every task's metrics."""
    report = build_report(reports)
    runs, multi, dims = report.runs, report.multi, report.dims
    out: list[str] = ["# TrustLLM report", ""]
    out += _md_table(
        ["target", "run id", "complete", "model", "suite", "code version", "dataset checksums", "created", "tasks"],
        (
            [
                _md(r.label),
                f"`{_md(r.run_id)}`",
                "yes" if r.complete else "**NO (partial results)**",
                _md(_model(r)),
                _md(_suite(r)),
                f"`{_md(_code_version(r))}`",
                str(_checksums(r)),
                _created(r),
                str(len(r.tasks)),
            ]
            for r in runs
        ),
        right=(6, 8),
    )
    out += [
        "",
        (
            f"Values: trustwatch's value; *ref* is the reference toolkit's semantics ({REFERENCE_LEGEND}); 95% CI; "
            "n = replies total / valid / invalid (unreadable reply) / errored; ↑ higher is better, "
            "↓ lower is better; – no value."
        ),
        "",
    ]

    out += ["## Summary", "", "Headline metric per task (`avg`, else `overall`, else the first metric).", ""]
    rows = []
    for dim, tasks in dims.items():
        for i, task in enumerate(tasks):
            key = next((headline_key(_metrics(r, task)) for r in runs if _metrics(r, task)), None)
            ref_m = next((_metrics(r, task)[key] for r in runs if key in _metrics(r, task)), None) if key else None
            cells = []
            for r in runs:
                if task not in r.tasks:
                    cells.append("not run")
                elif key is None or key not in _metrics(r, task):
                    cells.append("error" if r.tasks[task].error else DASH)
                else:
                    cells.append(fmt(_metrics(r, task)[key].value))
            rows.append(
                [
                    f"**{_md(dim)}**" if i == 0 else "",
                    _md(task.split("/", 1)[-1]),
                    f"{_md(key)} {_arrow(ref_m)}" if key else DASH,
                    *cells,
                ]
            )
    out += _md_table(
        ["dimension", "task", "headline", *(_md(r.label) for r in runs)], rows, right=tuple(range(3, 3 + len(runs)))
    )
    out += [
        "",
        "Per dimension: tasks · items · errored items (errors: per task the largest n_error of its metrics).",
        "",
    ]
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


def _md_task(runs: Sequence[RunReport], task: str, multi: bool) -> list[str]:
    out = [f"### {_md(task)}", ""]
    notes = _notes_index(runs, task)
    header = [
        "metric",
        *(["target"] if multi else []),
        "value",
        "ref",
        "95% CI",
        "n total / valid / invalid / err",
        "dir",
        "note",
    ]
    rows = []
    for key in _metric_keys(runs, task):
        first = True
        for r in runs:
            m = _metrics(r, task).get(key)
            if m is None:
                continue
            note = " ".join(m.note.split())
            rows.append(
                [
                    f"`{_md(key)}`" if first else "",
                    *([_md(r.label)] if multi else []),
                    fmt(m.value),
                    f"{fmt(m.reference_value)} {_ref_mark(m)}".rstrip(),
                    _ci(m),
                    f"{_count(m.n_total)} / {_count(m.n_valid)} / {_count(m.n_invalid)} / {_count(m.n_error)}",
                    _arrow(m),
                    f"[{notes[note]}]" if note else "",
                ]
            )
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
        elif t.error:
            extra.append(f"- {who}**error**: {_md(t.error)}")
        elif not t.metrics:
            extra.append(f"- {who}no metrics")
    if extra:
        out += extra + [""]
    if notes:
        out += ["Notes:", ""] + [f"{i}. {_md(n)}" for n, i in notes.items()] + [""]
    return out

"""Run report JSON: validation of the input files and the normalised view both renderers use
(runs, dimensions, metrics, number formatting, the safety trade-off points)."""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        has = ", ".join(map(repr, list(obj)[:8])) or "nothing"
        return f"the object lacks {', '.join(repr(k) for k in missing)} (has: {has})"
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
        runs.append(
            _Run(
                label,
                str(d["run_id"]),
                t,
                bool(d.get("complete", True)),
                manifest,
                dict(d["tasks"]),
                PALETTE[i % len(PALETTE)],
            )
        )
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


#: The mark after a reference value (the metric's ``reference`` label): "=" exact (the reference's
#: judges, or no judge), "~" approximate (other judges); none when absent or unlabelled (older reports).
REFERENCE_MARKS = {"exact": "=", "approximate": "~"}
REFERENCE_LEGEND = "= exact (the reference's judges, or no judge involved), ~ approximate (other judges)"


def _ref_mark(m: Mapping[str, Any]) -> str:
    return REFERENCE_MARKS.get(str(m.get("reference") or ""), "")


def _ref_judges(m: Mapping[str, Any]) -> str:
    judges = m.get("reference_judges") or []
    return "; ".join(str(j) for j in judges) if isinstance(judges, list) else ""


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
        f"{JAILBREAK} RtA"
        + ("" if any(n.startswith("safety/") for r in runs for n in r.tasks) else " (the reports have no safety tasks)")
        + "."
    )


def _jailbreak_attacks(runs: Sequence[_Run]) -> list[str]:
    return [k for k in _metric_keys(runs, JAILBREAK) if k not in JAILBREAK_NON_ATTACK]


def _notes_index(runs: Sequence[_Run], task: str) -> dict[str, int]:
    notes: dict[str, int] = {}
    for key in _metric_keys(runs, task):
        for r in runs:
            m = _metrics(r, task).get(key)
            if m and str(m.get("note") or "").strip():
                notes.setdefault(" ".join(str(m["note"]).split()), len(notes) + 1)
    return notes

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


# -- the typed report both renderers take ----------------------------------------------------------

#: a number of a report as its JSON holds it (ints stay ints, so they print without decimals)
Scalar = float | int | str | bool | None


def _scalar(x: Any) -> Scalar:
    return x if x is None or isinstance(x, (float, int, str, bool)) else str(x)


@dataclass(frozen=True)
class MetricEntry:
    """One metric of a task (``Metric.to_dict()``): numbers as the JSON holds them, None when absent."""

    value: Scalar = None
    reference_value: Scalar = None
    n_total: Scalar = None
    n_valid: Scalar = None
    n_invalid: Scalar = None
    n_error: Scalar = None
    ci_low: Scalar = None
    ci_high: Scalar = None
    higher_is_better: bool = True
    note: str = ""
    #: "exact", "approximate", "absent", or "" (unlabelled, older reports)
    reference: str = ""
    reference_judges: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, m: Mapping[str, Any]) -> MetricEntry:
        judges = m.get("reference_judges")
        return cls(
            value=_scalar(m.get("value")),
            reference_value=_scalar(m.get("reference_value")),
            n_total=_scalar(m.get("n_total")),
            n_valid=_scalar(m.get("n_valid")),
            n_invalid=_scalar(m.get("n_invalid")),
            n_error=_scalar(m.get("n_error")),
            ci_low=_scalar(m.get("ci_low")),
            ci_high=_scalar(m.get("ci_high")),
            higher_is_better=bool(m.get("higher_is_better", True)),
            note=str(m.get("note") or ""),
            reference=str(m.get("reference") or ""),
            reference_judges=tuple(str(j) for j in judges) if isinstance(judges, list) else (),
        )


@dataclass(frozen=True)
class TaskSection:
    """One task of a run: its metrics (in the report's order), items, and error ("" when none)."""

    metrics: dict[str, MetricEntry]
    n_items: int = 0
    error: str = ""

    @classmethod
    def from_json(cls, t: Mapping[str, Any]) -> TaskSection:
        try:
            n_items = int(t.get("n_items") or 0)
        except (TypeError, ValueError):
            n_items = 0
        return cls(
            metrics={str(k): MetricEntry.from_json(m) for k, m in (t.get("metrics") or {}).items()},
            n_items=n_items,
            error=str(t.get("error") or ""),
        )


@dataclass(frozen=True)
class RunReport:
    """One run's report as the renderers show it. ``label``: a unique display name (the target, or
    "target · run_id" where targets repeat); ``color``: its colour in every chart."""

    label: str
    run_id: str
    target: str
    complete: bool
    manifest: Mapping[str, Any]
    tasks: dict[str, TaskSection]
    color: str


@dataclass(frozen=True)
class Report:
    """What the renderers take: the runs side by side and their dimensions (dimension -> its task
    names in any run, TrustLLM order). Build it once with :func:`build_report`."""

    runs: tuple[RunReport, ...]
    dims: dict[str, list[str]]

    @property
    def multi(self) -> bool:
        return len(self.runs) > 1


def build_report(reports: Report | Sequence[Any]) -> Report:
    """The typed report of run reports (``Report.to_json()`` dicts, or objects with ``to_json``);
    a :class:`Report` is returned as it is. Raises :class:`ReportError` for a non-report."""
    if isinstance(reports, Report):
        return reports
    runs = tuple(_runs(reports))
    return Report(runs, _dims(runs))


def _runs(reports: Sequence[Any]) -> list[RunReport]:
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
            RunReport(
                label,
                str(d["run_id"]),
                t,
                bool(d.get("complete", True)),
                manifest,
                {str(name): TaskSection.from_json(task) for name, task in d["tasks"].items()},
                PALETTE[i % len(PALETTE)],
            )
        )
    return runs


def _dim_of(task: str) -> str:
    return task.split("/", 1)[0]


def _dims(runs: Sequence[RunReport]) -> dict[str, list[str]]:
    """Dimension -> its task names (every task in any run), TrustLLM order."""
    by: dict[str, set[str]] = {}
    for r in runs:
        for name in r.tasks:
            by.setdefault(_dim_of(name), set()).add(name)
    order = [d for d in DIMENSIONS if d in by] + sorted(d for d in by if d not in DIMENSIONS)
    return {d: sorted(by[d]) for d in order}


def _metric_keys(runs: Sequence[RunReport], task: str) -> list[str]:
    keys: list[str] = []
    for r in runs:
        for k in _metrics(r, task):
            if k not in keys:
                keys.append(k)
    return keys


def _metrics(run: RunReport, task: str) -> dict[str, MetricEntry]:
    t = run.tasks.get(task)
    return t.metrics if t is not None else {}


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


def _int(x: Scalar) -> int:
    """A count as an int (0 when absent or not a number)."""
    try:
        return int(x or 0)
    except (TypeError, ValueError):
        return 0


def _ci(m: MetricEntry) -> str:
    if _num(m.ci_low) is None and _num(m.ci_high) is None:
        return DASH
    return f"[{fmt(m.ci_low)}, {fmt(m.ci_high)}]"


def _arrow(m: MetricEntry | None) -> str:
    return "↑" if m is None or m.higher_is_better else "↓"


#: The mark after a reference value (the metric's ``reference`` label): "=" exact (the reference's
#: judges, or no judge), "~" approximate (other judges); none when absent or unlabelled (older reports).
REFERENCE_MARKS = {"exact": "=", "approximate": "~"}
REFERENCE_LEGEND = "= exact (the reference's judges, or no judge involved), ~ approximate (other judges)"


def _ref_mark(m: MetricEntry) -> str:
    return REFERENCE_MARKS.get(m.reference, "")


def _ref_judges(m: MetricEntry) -> str:
    return "; ".join(m.reference_judges)


def _differs(m: MetricEntry) -> bool:
    v, r = _num(m.value), _num(m.reference_value)
    if v is None and r is None:
        return False
    return v is None or r is None or abs(v - r) > 5e-4


def _code_version(run: RunReport) -> str:
    return str(run.manifest.get("code_version") or DASH)


def _checksums(run: RunReport) -> int:
    sha = run.manifest.get("dataset_sha256")
    return len(sha) if isinstance(sha, Mapping) else 0


def _created(run: RunReport) -> str:
    ms = _num(run.manifest.get("created_unix_ms"))
    if ms is None:
        return DASH
    try:
        return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return DASH


def _model(run: RunReport) -> str:
    t = run.manifest.get("target")
    if isinstance(t, Mapping) and t.get("backend"):
        return f"{t.get('backend')}:{t.get('model', '')}"
    return DASH


def _suite(run: RunReport) -> str:
    s = run.manifest.get("suite")
    return str(s.get("name") or DASH) if isinstance(s, Mapping) else DASH


def _dim_cell(run: RunReport, dim: str) -> str:
    n = _dim_totals(run, dim)
    return "not run" if n[0] == 0 else "{} · {} · {}".format(*n)


def _dim_totals(run: RunReport, dim: str) -> tuple[int, int, int]:
    """(tasks, items, errors) of one dimension in one run; errors as in scoring.summary."""
    n_tasks = items = errors = 0
    for name, t in run.tasks.items():
        if _dim_of(name) != dim:
            continue
        n_tasks += 1
        items += t.n_items
        if t.metrics:
            errors += max(_int(m.n_error) for m in t.metrics.values())
    return n_tasks, items, errors


@dataclass
class _Point:
    run: RunReport
    x: float
    y: float
    misuse: float | None
    jailbreak: float | None
    x_lo: float | None
    x_hi: float | None


def _rta(run: RunReport, task: str) -> MetricEntry | None:
    return _metrics(run, task).get("RtA")


def _tradeoff(runs: Sequence[RunReport]) -> tuple[list[_Point], list[str]]:
    """One point per target that has the tasks, and a reason for each target left out."""
    points, skipped = [], []
    for r in runs:
        ex = _rta(r, EXAGGERATED)
        mis, jb = _rta(r, MISUSE), _rta(r, JAILBREAK)
        x = _num(ex.value) if ex else None
        mv = _num(mis.value) if mis else None
        jv = _num(jb.value) if jb else None
        ys = [v for v in (mv, jv) if v is not None]
        if x is None or not ys:
            why = []
            if x is None:
                why.append(f"no {EXAGGERATED} RtA" if ex is None else f"{EXAGGERATED} RtA has no value")
            if not ys:
                why.append(f"no {MISUSE} or {JAILBREAK} RtA value")
            skipped.append(f"{r.label}: {' and '.join(why)}")
            continue
        lo, hi = (_num(ex.ci_low), _num(ex.ci_high)) if ex else (None, None)
        points.append(_Point(r, x, sum(ys) / len(ys), mv, jv, lo, hi))
    return points, skipped


_TRADEOFF_EXPLAINED = (
    f"x: {EXAGGERATED} RtA, the share of safe-but-scary-looking prompts refused (over-refusal, lower is "
    f"better); y: mean of {MISUSE} RtA and {JAILBREAK} RtA (refusal of harmful requests, higher is "
    "better), one point per target; the vertical segment spans the misuse and jailbreak values, the "
    "horizontal whisker is the exaggerated-safety 95% CI. Top left is best: refuses harmful requests "
    "and answers benign ones."
)


def _no_tradeoff_reason(runs: Sequence[RunReport]) -> str:
    return (
        f"Safety trade-off plot not drawn: no report has both {EXAGGERATED} RtA and {MISUSE} or "
        f"{JAILBREAK} RtA"
        + ("" if any(n.startswith("safety/") for r in runs for n in r.tasks) else " (the reports have no safety tasks)")
        + "."
    )


def _jailbreak_attacks(runs: Sequence[RunReport]) -> list[str]:
    return [k for k in _metric_keys(runs, JAILBREAK) if k not in JAILBREAK_NON_ATTACK]


def _notes_index(runs: Sequence[RunReport], task: str) -> dict[str, int]:
    notes: dict[str, int] = {}
    for key in _metric_keys(runs, task):
        for r in runs:
            m = _metrics(r, task).get(key)
            if m and m.note.strip():
                notes.setdefault(" ".join(m.note.split()), len(notes) + 1)
    return notes

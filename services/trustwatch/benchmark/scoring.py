"""From judgments to metrics and reports: shared by the aggregator, the embedded run and
`trustwatch evaluate`. Pure logic over plain rows."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trustwatch.benchmark import tasks as task_registry
from trustwatch.benchmark.evaluators.base import Verdict
from trustwatch.benchmark.reference import APPROXIMATE, EXACT, label_metrics
from trustwatch.benchmark.tasks.base import Metric, ScoredItem
from trustwatch.platform.messages import loads_record
from trustwatch.v1 import messages_pb2 as pb

#: How evaluators worded a generation failure in a verdict's error before judgments carried it in
#: their own field (an error verdict now holds the generation's error as it is). Scoring reads a
#: judgment's ``generation_error`` field when its ``error_kind`` is set (every judgment made since
#: kinds exist), and reads this prefix only in rows stored before (no kind).
GENERATION_FAILED = "generation failed: "


def generation_error(j: Any) -> str:
    """The generation error behind a judgment (pb.Judgment or stored row), or "" when there is none."""
    error = j.error or ""
    if not error:
        return ""
    if getattr(j, "error_kind", None):
        return str(getattr(j, "generation_error", "") or "")
    return error[len(GENERATION_FAILED) :] if error.startswith(GENERATION_FAILED) else ""


def verdict_of(j: Any) -> Verdict:
    """A stored or decoded judgment back to a Verdict (j: pb.Judgment or a row with the same names)."""
    score = j.score if j.score is not None else math.nan
    return Verdict(
        label=j.label,
        valid=bool(j.valid),
        score=float(score),
        error=j.error or "",
        detail=json.loads(j.detail_json) if j.detail_json else {},
    )


def scored_items(rows: Iterable[Any]) -> dict[str, list[ScoredItem]]:
    """Group judgment rows (stored rows or decoded Judgments) into one ScoredItem per job (one reply:
    item x sample, the row's ``sample``), by task."""
    by_job: dict[str, dict[str, Any]] = {}
    for r in rows:
        ident = r.ref if isinstance(r, pb.Judgment) else r  # a decoded Judgment names its job in ref
        entry = by_job.setdefault(
            ident.job_id,
            {
                "task": ident.task,
                "item_id": ident.item_id,
                "record": r.record_json,
                "response": r.response,
                "verdicts": {},
                "gen_error": "",
                "sample": int(getattr(ident, "sample", 0) or 0),
            },
        )
        v = verdict_of(r)
        entry["verdicts"][r.evaluator] = v
        gen_error = generation_error(r)
        if gen_error:
            entry["gen_error"] = gen_error
    out: dict[str, list[ScoredItem]] = defaultdict(list)
    for _job, e in sorted(by_job.items(), key=lambda kv: _order(kv[1]["item_id"], kv[0])):
        out[e["task"]].append(
            ScoredItem(
                item_id=e["item_id"],
                record=loads_record(e["record"]),
                response=e["response"],
                generation_error=e["gen_error"],
                verdicts=e["verdicts"],
                sample=e["sample"],
            )
        )
    return dict(out)


def _order(item_id: str, job: str) -> tuple[int, str]:
    return (int(item_id), job) if item_id.isdigit() else (math.inf, job)  # type: ignore[return-value]  # inf sorts after every int


@dataclass
class TaskReport:
    task: str
    metrics: dict[str, Metric]
    n_items: int
    error: str = ""


@dataclass
class Report:
    run_id: str
    target: str
    tasks: dict[str, TaskReport]
    manifest: Mapping[str, Any] = field(default_factory=dict)
    complete: bool = True
    #: planned (job, evaluator) pairs without a settled judgment: the first ones, and how many in all
    missing: list[dict[str, Any]] = field(default_factory=list)
    n_missing: int = 0
    #: incomplete past the run's deadline
    overdue: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "target": self.target,
            "complete": self.complete,
            "n_missing": self.n_missing,
            "missing": list(self.missing),
            "overdue": self.overdue,
            "manifest": dict(self.manifest),
            "tasks": {
                name: {
                    "n_items": t.n_items,
                    "error": t.error,
                    "metrics": {k: m.to_dict() for k, m in t.metrics.items()},
                }
                for name, t in self.tasks.items()
            },
            "summary": summary(self),
        }


def compute_task(
    task_name: str, items: Sequence[ScoredItem], judges: Mapping[str, Mapping[str, str]] | None = None
) -> TaskReport:
    """A task's metrics, each with its reference label from the run's ``judges`` (the manifest's; None:
    not recorded); a metric function that fails is reported as the task's error, not raised."""
    try:
        task = task_registry.get(task_name)
        metrics = task.metrics(items)
    except Exception as exc:  # noqa: BLE001 - one broken task must not hide the others
        return TaskReport(task_name, {}, len(items), error=f"{type(exc).__name__}: {exc}")
    label_metrics(task, metrics, judges)
    return TaskReport(task_name, metrics, len(items))


def build_report(
    run_id: str, target: str, rows: Iterable[Any], manifest: Mapping[str, Any] | None = None, complete: bool = True
) -> Report:
    grouped = scored_items(rows)
    judges = (manifest or {}).get("judges")
    tasks = {
        name: compute_task(name, items, judges if isinstance(judges, Mapping) else None)
        for name, items in sorted(grouped.items())
    }
    return Report(run_id, target, tasks, manifest or {}, complete)


def summary(report: Report) -> dict[str, Any]:
    """Per dimension: items, errors and the tasks' headline values (first metric key of each task)."""
    dims: dict[str, dict[str, Any]] = {}
    for name, t in report.tasks.items():
        d = dims.setdefault(name.split("/", 1)[0], {"n_items": 0, "n_error": 0, "n_invalid": 0, "tasks": {}})
        d["n_items"] += t.n_items
        if t.metrics:
            key = "avg" if "avg" in t.metrics else ("overall" if "overall" in t.metrics else next(iter(t.metrics)))
            m = t.metrics[key]
            d["n_error"] += max(mm.n_error for mm in t.metrics.values())
            d["n_invalid"] += max(mm.n_invalid for mm in t.metrics.values())
            d["tasks"][name] = {
                "metric": key,
                "value": m.value,
                "reference_value": m.reference_value,
                "reference": m.reference,
                "higher_is_better": m.higher_is_better,
            }
    return dims


def format_table(report: Report) -> str:
    """A plain-text table of every metric, for the terminal. After ``ref``: ``=`` the reference value is
    exact (the reference's judges, or none), ``~`` approximate (other judges), blank: none."""
    lines = [f"run {report.run_id}  target {report.target}", ""]
    header = (
        f"{'task':<40} {'metric':<22} {'value':>8} {'ref':>8}   {'95% CI':>17} {'n':>6} {'valid':>6} {'inval':>6} "
        f"{'err':>5}"
    )
    lines += [header, "-" * len(header)]

    def f(x: float | None) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

    for name, t in report.tasks.items():
        if t.error:
            lines.append(f"{name:<40} ERROR: {t.error}")
        for key, m in t.metrics.items():
            ci = f"[{f(m.ci_low)}, {f(m.ci_high)}]" if m.ci_low is not None else "-"
            lines.append(
                f"{name:<40} {key[:22]:<22} {f(m.value):>8} {f(m.reference_value):>8} {_mark(m.reference)} {ci:>17} "
                f"{m.n_total:>6} {m.n_valid:>6} {m.n_invalid:>6} {m.n_error:>5}"
            )
    if any(m.reference == APPROXIMATE for t in report.tasks.values() for m in t.metrics.values()):
        lines += [
            "",
            "ref: = exact (the reference's judges, or no judge), ~ approximate (other judges; see the JSON "
            "report's reference_judges)",
        ]
    return "\n".join(lines)


def _mark(label: str) -> str:
    return {EXACT: " =", APPROXIMATE: " ~"}.get(label, "  ")

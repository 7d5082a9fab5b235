"""`trustwatch evaluate`: score generations made with the reference toolkit, without generating.

Input: ``DIR/<dimension>/<file>.json``, each a JSON array of the dataset's records plus the model's
reply in ``res`` (the reference toolkit's ``generation_results/<model>/`` layout). Output: for each
file, keyed ``<dimension>/<file stem>``, its metrics under the names the reference returns.

Bad input never stops the other files: an unknown file name, a file that is not a JSON array, or
records without a usable ``res`` are reported (per file, or per item as counted errors).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from trustwatch.benchmark import tasks as task_registry
from trustwatch.benchmark.evaluators.base import EvalItem, EvaluatorSettings, Verdict, judges_identity
from trustwatch.benchmark.scoring import compute_task
from trustwatch.benchmark.tasks.base import ScoredItem
from trustwatch.judge.client import LocalEvaluators

# The offline evaluator set lives with the judge (`trustwatch judge serve --offline` serves it too).
from trustwatch.judge.offline import OFFLINE_SKIP, OfflineEvaluators


@dataclass
class FileResult:
    key: str
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    n_items: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metrics": self.metrics, "n_items": self.n_items}
        for k in ("skipped", "error"):
            if getattr(self, k):
                out[k] = getattr(self, k)
        if self.warnings:
            out["warnings"] = self.warnings
        return out


def _items(task: task_registry.Task, records: list[Any], warnings: list[str]) -> list[tuple[EvalItem, str]]:
    out = []
    bad_res = 0
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            warnings.append(f"record {i} is a {type(rec).__name__}, not an object; counted as an error")
            out.append(
                (
                    EvalItem(
                        f"{task.name}/{i}", task.name, "", "", {}, generation_error=f"record {i} is not an object"
                    ),
                    str(i),
                )
            )
            continue
        res = rec.get("res")
        error = ""
        if "res" not in rec:
            error = "record has no 'res' field"
        elif res is None:
            error = "generation failed (res is null)"
        elif not isinstance(res, str):
            error = f"'res' is a {type(res).__name__}, expected a string"
        if error:
            bad_res += 1
        record = {k: v for k, v in rec.items() if k not in (task.prompt_field, "res")}
        prompt = rec.get(task.prompt_field)
        out.append(
            (
                EvalItem(
                    f"{task.name}/{i}",
                    task.name,
                    prompt if isinstance(prompt, str) else "",
                    res if isinstance(res, str) else "",
                    record,
                    generation_error=error,
                ),
                str(i),
            )
        )
    if bad_res:
        warnings.append(f"{bad_res} record(s) without a usable 'res' string: counted as errors")
    return out


def score_file(path: Path, key: str, client: LocalEvaluators, data_dir: Path | None, offline: bool) -> FileResult:
    result = FileResult(key)
    try:
        task = task_registry.get(key)
    except task_registry.UnknownTask:
        result.error = (
            f"{path.name} in {path.parent.name}/ is not a TrustLLM file; expected one of the 24 names "
            f"(e.g. truthfulness/external.json)"
        )
        return result
    try:
        records = json.loads(path.read_text(encoding="utf-8"), strict=False)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, RecursionError) as exc:  # Recursion: nested too deep
        result.error = f"{path} is not readable JSON: {exc}"
        return result
    if not isinstance(records, list):
        result.error = f"{path} must hold a JSON array of records, found {type(records).__name__}"
        return result
    if data_dir is not None and (data_dir / task.dataset).is_file():
        expected = len(json.loads((data_dir / task.dataset).read_text(encoding="utf-8"), strict=False))
        if expected != len(records):
            result.warnings.append(
                f"{len(records)} records, the dataset file has {expected}: "
                f"{'extra' if len(records) > expected else 'missing'} records"
            )
    pairs = _items(task, records, result.warnings)
    result.n_items = len(pairs)
    verdicts: dict[int, dict[str, Verdict]] = defaultdict(dict)
    by_eval: dict[str, list[int]] = defaultdict(list)
    for idx, (item, _) in enumerate(pairs):
        for name in task.evaluators_for(item.record):
            by_eval[name].append(idx)
    for name, idxs in by_eval.items():
        for idx, v in zip(idxs, client.evaluate(name, [pairs[i][0] for i in idxs])):
            verdicts[idx][name] = v
    scored = [
        ScoredItem(
            item_id=iid,
            record=item.record,
            response=item.response,
            generation_error=item.generation_error,
            verdicts=verdicts[idx],
        )
        for idx, (item, iid) in enumerate(pairs)
    ]
    not_judged = sum(1 for s in scored if s.verdicts and all(v.error == OFFLINE_SKIP for v in s.verdicts.values()))
    if offline and scored and not_judged == len(scored):
        result.skipped = f"every item needs an external judge ({', '.join(sorted(by_eval))}); not run with --offline"
        return result
    if not_judged:
        result.warnings.append(
            f"{not_judged} item(s) need an external judge and were not judged (--offline): counted as errors"
        )
    report = compute_task(task.name, scored, judges_identity(by_eval, client.settings, offline))
    if report.error:
        result.error = f"metric failed: {report.error}"
    result.metrics = {k: _metric_json(m.to_dict()) for k, m in report.metrics.items()}
    return result


def _metric_json(d: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "value",
        "reference_value",
        "reference",
        "reference_judges",
        "n_total",
        "n_valid",
        "n_error",
        "ci_low",
        "ci_high",
        "higher_is_better",
        "note",
        "extra",
    )
    out = {k: d.get(k) for k in keep}
    for k, v in list(out.items()):
        if isinstance(v, float) and math.isnan(v):
            out[k] = None
    return out


def evaluate_results(
    results_dir: Path, settings: EvaluatorSettings | None = None, offline: bool = False, data_dir: Path | None = None
) -> dict[str, dict[str, Any]]:
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"{results_dir} is not a folder of <dimension>/<file>.json results")
    files = sorted(p for p in results_dir.glob("*/*.json") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no <dimension>/<file>.json files under {results_dir}")
    client = OfflineEvaluators(settings) if offline else LocalEvaluators(settings)
    out: dict[str, dict[str, Any]] = {}
    # a progress bar (rate, ETA) on a terminal; none in a log (disable=None)
    for p in tqdm(files, desc="evaluate", unit="file", disable=None, file=sys.stderr, leave=False):
        key = f"{p.parent.name}/{p.stem}"
        out[key] = score_file(p, key, client, data_dir, offline).to_json()
    return out

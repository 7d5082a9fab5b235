"""Both sides of a conformance test: sampled dataset records with crafted replies, trustwatch's metrics
for them (the ``trustwatch evaluate`` path: offline evaluators in-process, then the task's metric
function) and the comparison of every reference key with the matching ``reference_value``.

What is not compared, by design: replies the reference sends to its GPT judge (tests assert it was not
asked), ``None`` replies where the reference crashes on them, and groups with nothing to count (the
reference reports 0 for an empty group, trustwatch None: no data is no score of 0).
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from trustwatch.benchmark import tasks
from trustwatch.benchmark.evaluators.base import EvalItem, EvaluatorSettings, Verdict
from trustwatch.benchmark.evaluators.refusal.rules import judge_refusal
from trustwatch.benchmark.tasks.base import Metric, ScoredItem
from trustwatch.judge.offline import OfflineEvaluators

Row = dict[str, Any]


def records(data_dir: Path, task_name: str) -> list[Row]:
    task = tasks.get(task_name)
    rows: list[Row] = json.loads((Path(data_dir) / task.dataset).read_text(encoding="utf-8"), strict=False)
    return rows


def sample(rows: Sequence[Row], n: int, seed: int = 0, where: Callable[[Row], bool] | None = None) -> list[Row]:
    """``n`` records (fewer if fewer match), in file order; the same seed gives the same sample."""
    pool = [i for i, r in enumerate(rows) if where is None or where(r)]
    picked = sorted(random.Random(seed).sample(pool, min(n, len(pool))))
    return [dict(rows[i]) for i in picked]


def with_replies(rows: Sequence[Row], replies: Sequence[Any]) -> list[Row]:
    """Each record with ``res`` set; ``replies`` cycle, and a callable reply is called with the record."""
    out = []
    for i, r in enumerate(rows):
        reply = replies[i % len(replies)]
        out.append({**r, "res": reply(r) if callable(reply) else reply})
    return out


def refuses(text: str) -> bool:
    """The refusal classifier both sides share where a sub-task needs one (trustwatch's phrase rules)."""
    return judge_refusal(text).refused


def scored(task_name: str, rows: Sequence[Row]) -> list[ScoredItem]:
    """Rows with ``res`` judged by the task's evaluators in-process, as ``trustwatch evaluate --offline``
    does: LLM judges give counted 'not judged' errors, hybrids decide what their rule can, a None
    reply is a failed generation."""
    task = tasks.get(task_name)
    client = OfflineEvaluators(EvaluatorSettings())
    items = []
    for i, r in enumerate(rows):
        res = r.get("res")
        record = {k: v for k, v in r.items() if k not in (task.prompt_field, "res")}
        items.append(
            EvalItem(
                f"{task.name}/{i}",
                task.name,
                str(r.get(task.prompt_field, "")),
                res if isinstance(res, str) else "",
                record,
                generation_error="" if isinstance(res, str) else "generation failed (res is null)",
            )
        )
    verdicts: dict[int, dict[str, Verdict]] = defaultdict(dict)
    by_eval: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        for name in task.evaluators_for(it.record):
            by_eval[name].append(i)
    for name, idxs in by_eval.items():
        for i, v in zip(idxs, client.evaluate(name, [items[j] for j in idxs])):
            verdicts[i][name] = v
    return [ScoredItem(str(i), it.record, it.response, it.generation_error, verdicts[i]) for i, it in enumerate(items)]


def trustwatch_metrics(task_name: str, rows: Sequence[Row]) -> dict[str, Metric]:
    return tasks.get(task_name).metrics(scored(task_name, rows))


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def mismatches(
    reference: Mapping[str, Any], ours: Mapping[str, Metric], keys: Mapping[str, str] | None = None
) -> dict[str, tuple[Any, Any]]:
    """{reference key: (reference's value, trustwatch's reference_value)} where they differ; ``keys``
    maps reference keys to trustwatch metric names (default: the same names, every reference key)."""
    keys = keys or {k: k for k in reference}
    out = {}
    for ref_key, our_key in keys.items():
        theirs = reference[ref_key]
        mine = ours[our_key].reference_value if our_key in ours else "missing"
        if mine == "missing" or not _same(theirs, mine):
            out[ref_key] = (theirs, mine)
    return out


def assert_conforms(
    reference: Mapping[str, Any], ours: Mapping[str, Metric], keys: Mapping[str, str] | None = None
) -> None:
    bad = mismatches(reference, ours, keys)
    assert not bad, f"reference value vs trustwatch reference_value differ: {bad}"

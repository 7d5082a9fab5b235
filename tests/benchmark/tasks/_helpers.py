"""Small builders for metric tests: hand-made ScoredItem fixtures without the bus."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from trustwatch.benchmark.evaluators.base import Verdict
from trustwatch.benchmark.tasks.base import ScoredItem

_ids = itertools.count()


def verdict(label: str, valid: bool = True, score: float = math.nan, error: str = "", **detail: Any) -> Verdict:
    """A verdict; keyword arguments become ``detail``."""
    return Verdict(label=label, valid=valid, score=score, error=error, detail=detail)


def failed(error: str = "judge down") -> Verdict:
    return Verdict.failed(error)


def scored(
    record: Mapping[str, Any],
    verdicts: Mapping[str, Verdict] | None = None,
    response: str = "",
    generation_error: str = "",
    item_id: str | None = None,
) -> ScoredItem:
    """One scored item; ``item_id`` defaults to a fresh counter value."""
    return ScoredItem(
        item_id=str(next(_ids)) if item_id is None else item_id,
        record=dict(record),
        response=response,
        generation_error=generation_error,
        verdicts=dict(verdicts or {}),
    )


def score_dataset(task: Any, data_dir: Any, verdict_for: Any, response: str = "") -> list[ScoredItem]:
    """Every item of ``task``'s dataset with verdicts from ``verdict_for(evaluator_name, item)``.

    For whole-file smoke tests of metric functions: the evaluators are the task's route for each
    record; ``item_id`` is the record's position, as in production.
    """
    from trustwatch.benchmark.tasks import load_items

    out = []
    for it in load_items(task, data_dir):
        verdicts = {name: verdict_for(name, it) for name in task.evaluators_for(it.record)}
        out.append(scored(it.record, verdicts, response=response, item_id=it.item_id))
    return out


def triple(
    items: Sequence[ScoredItem], change: Callable[[ScoredItem, int], ScoredItem | None] | None = None, k: int = 3
) -> list[ScoredItem]:
    """A ``k``-sample run built from a one-sample fixture: every reply once per sample 0..k-1, same
    ``item_id``. ``change(item, sample)`` may return a different reply for that sample (None: the copy);
    it keeps the item's id."""
    out = []
    for s in range(k):
        for it in items:
            new = change(it, s) if change is not None else None
            out.append(replace(new if new is not None else it, item_id=it.item_id, sample=s))
    return out

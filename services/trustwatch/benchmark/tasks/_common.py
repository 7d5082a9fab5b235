"""Helpers shared by task modules: grouping, macro-F1, bootstrap intervals, per-item units (rates:
_accuracy.py, _rates.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from statistics import fmean
from typing import TypeVar

from trustwatch.benchmark.stats import bootstrap_ci
from trustwatch.benchmark.tasks.base import ScoredItem

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def group_by(items: Iterable[ScoredItem], key: Callable[[ScoredItem], K]) -> dict[K, list[ScoredItem]]:
    out: dict[K, list[ScoredItem]] = defaultdict(list)
    for it in items:
        out[key(it)].append(it)
    return dict(out)


def macro_f1(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str] | None = None) -> float | None:
    """Macro-averaged F1.

    With ``labels=None`` the classes are those present in gold or predictions (sklearn's
    classification_report "macro avg"); with explicit labels, predictions outside them (e.g.
    "invalid") are misses that count against recall and against no class's precision. A listed class
    that appears in neither gold nor predictions has no defined F1 and is left out of the mean.
    """
    if not gold:
        return None
    classes = list(labels) if labels is not None else sorted(set(gold) | set(pred))
    f1s = []
    for c in classes:
        tp = sum(1 for g, p in zip(gold, pred) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred) if g == c and p != c)
        denom = 2 * tp + fp + fn
        if denom:
            f1s.append(2 * tp / denom)
    return sum(f1s) / len(f1s) if f1s else None


#: ``Metric.statistic`` of a metric whose value is the mean of its ``units``.
MEAN = "mean"


def item_units(outcomes: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Per-item units from (item_id, outcome) pairs: the outcome, or the mean of an item's outcomes
    where it occurs several times (several samples of one prompt). The one definition of a metric's
    ``units``; pass exactly the outcomes ``value`` averages (non-errored, counted items)."""
    by_item: dict[str, list[float]] = defaultdict(list)
    for item_id, outcome in outcomes:
        by_item[item_id].append(float(outcome))
    return {k: (v[0] if len(v) == 1 else fmean(v)) for k, v in by_item.items()}


def mean_or_none(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def boot(items: Sequence[T], statistic: Callable[[Sequence[T]], float | None]) -> tuple[float | None, float | None]:
    """Percentile-bootstrap interval over items (fixed seed: reports are reproducible)."""
    return bootstrap_ci(items, statistic, n_boot=500, seed=0)

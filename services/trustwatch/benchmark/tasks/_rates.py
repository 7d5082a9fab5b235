"""Metric builders shared by the truthfulness, fairness and robustness task modules.

Conventions (stated once here, repeated in each Metric's note):

* Items whose generation or judging failed (``ScoredItem.errored``) are counted in ``n_error`` and
  left out of BOTH ``value`` and ``reference_value``: an endpoint failure says nothing about the
  model. (The reference has no such notion: its runs are complete or crash.)
* An outcome function returns True (hit), False (miss) or None (the item is not counted). ``value``
  and ``reference_value`` each have their own outcome function, so each can drop exactly what it
  should: the reference drops what the toolkit drops, trustwatch keeps invalid answers as misses.
* ``n_valid`` counts the items that got a usable verdict (not errored, every verdict ``valid``, and
  counted by ``value``); an invalid answer that ``value`` counts as a miss is in ``n_total`` but not
  in ``n_valid``. A metric may pass its own ``valid`` predicate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trustwatch.benchmark.stats import mean_ci, wilson
from trustwatch.benchmark.tasks._common import MEAN, boot, item_units, mean_or_none
from trustwatch.benchmark.tasks.base import Metric, ScoredItem

Outcome = Callable[[ScoredItem], "bool | None"]
Stat = Callable[[Sequence[ScoredItem]], "float | None"]

ERRORS_NOTE = "items whose generation or judging failed are counted in n_error and excluded from both values"


def ok_items(items: Sequence[ScoredItem]) -> list[ScoredItem]:
    return [it for it in items if not it.errored]


def all_valid(it: ScoredItem) -> bool:
    return all(v.valid for v in it.verdicts.values())


def counts(items: Sequence[ScoredItem], outcome: Outcome) -> tuple[int, int]:
    """(hits, counted) over the non-errored items."""
    hits = n = 0
    for it in items:
        if it.errored:
            continue
        o = outcome(it)
        if o is None:
            continue
        n += 1
        hits += bool(o)
    return hits, n


def rate_units(items: Sequence[ScoredItem], outcome: Outcome) -> dict[str, float]:
    """Per-item 1.0/0.0 under ``outcome`` over the items :func:`counts` counts (``Metric.units``)."""
    pairs = []
    for it in items:
        if it.errored:
            continue
        o = outcome(it)
        if o is not None:
            pairs.append((it.item_id, 1.0 if o else 0.0))
    return item_units(pairs)


def rate(items: Sequence[ScoredItem], outcome: Outcome) -> float | None:
    hits, n = counts(items, outcome)
    return hits / n if n else None


def rate_metric(
    items: Sequence[ScoredItem],
    outcome: Outcome,
    ref_outcome: Outcome | None = None,
    *,
    note: str,
    higher_is_better: bool = True,
    extra: dict[str, Any] | None = None,
    valid: Callable[[ScoredItem], bool] | None = None,
) -> Metric:
    """A share: value = hits/counted under ``outcome`` (Wilson CI), reference under ``ref_outcome``."""
    hits, n = counts(items, outcome)
    is_valid = valid or all_valid
    n_valid = sum(1 for it in items if not it.errored and outcome(it) is not None and is_valid(it))
    ref = rate(items, ref_outcome) if ref_outcome is not None else (hits / n if n else None)
    lo, hi = wilson(hits, n)
    n_error = sum(1 for it in items if it.errored)
    return Metric(
        value=hits / n if n else None,
        reference_value=ref,
        n_total=len(items),
        n_valid=n_valid,
        n_error=n_error,
        ci_low=lo,
        ci_high=hi,
        higher_is_better=higher_is_better,
        note=f"{note}; {ERRORS_NOTE}",
        extra=dict(extra or {}),
        units=rate_units(items, outcome),
        statistic=MEAN,
    )


def avg_metric(
    items: Sequence[ScoredItem],
    parts: Sequence[Metric],
    stat: Stat,
    *,
    note: str,
    higher_is_better: bool = True,
) -> Metric:
    """The unweighted mean of the ``parts`` (the reference's ``avg``).

    ``stat`` computes the same mean from a set of items; it drives the bootstrap CI over items. A mean
    of groups is no mean of per-item outcomes: no ``units``.
    """
    lo, hi = boot(items, stat)
    return Metric(
        value=mean_or_none(p.value for p in parts),
        reference_value=mean_or_none(p.reference_value for p in parts),
        n_total=len(items),
        n_valid=sum(p.n_valid for p in parts),
        n_error=sum(1 for it in items if it.errored),
        ci_low=lo,
        ci_high=hi,
        higher_is_better=higher_is_better,
        note=f"{note}; {ERRORS_NOTE}",
    )


def mean_metric(
    items: Sequence[ScoredItem],
    score: Callable[[ScoredItem], float | None],
    *,
    note: str,
    higher_is_better: bool = True,
    extra: dict[str, Any] | None = None,
) -> Metric:
    """Mean of a per-item score (None or NaN: not valid); value == reference_value."""
    vals: list[float] = []
    pairs: list[tuple[str, float]] = []
    for it in items:
        if it.errored:
            continue
        s = score(it)
        if s is None or s != s:  # NaN
            continue
        vals.append(float(s))
        pairs.append((it.item_id, float(s)))
    m = sum(vals) / len(vals) if vals else None
    lo, hi = mean_ci(vals, n_boot=500, seed=0)
    return Metric(
        value=m,
        reference_value=m,
        n_total=len(items),
        n_valid=len(vals),
        n_error=sum(1 for it in items if it.errored),
        ci_low=lo,
        ci_high=hi,
        higher_is_better=higher_is_better,
        note=f"{note}; {ERRORS_NOTE}",
        extra=dict(extra or {}),
        units=item_units(pairs),
        statistic=MEAN,
    )


def int_id(it: ScoredItem) -> int:
    try:
        return int(it.item_id)
    except (TypeError, ValueError):
        return -1

"""Confidence intervals of task metrics, from statsmodels and scipy.

* :func:`wilson`: a proportion (statsmodels ``proportion_confint(method="wilson")``).
* :func:`mean_interval`: the mean of per-item units (``Metric.units``; a multi-sample run averages an
  item's samples first, so items are the independent units): Wilson when every unit is 0 or 1 (one
  sample per item, or samples that agree), else the t interval of the per-item means
  (``scipy.stats.ttest_1samp(...).confidence_interval``), clipped to the units' range.
* :func:`cluster_bootstrap`: percentile bootstrap (``scipy.stats.bootstrap``) that resamples
  CLUSTERS of units (an item's samples, an option pair's two formats, an instruction's perturbations)
  with replacement, for smooth statistics of many units that are no plain mean (a mean of group means,
  a ratio, macro-F1). Never used for a maximum or a p-value: a percentile bootstrap of a maximum
  cannot exceed the observed maximum, and the spread of a resampled p-value is no confidence interval
  of anything.
* :func:`noncentrality_interval`: the interval of a chi-square's noncentrality by test inversion
  (``scipy.stats.ncx2``), for Cramér's V.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Sequence

import numpy as np
from scipy import stats
from scipy.optimize import brentq
from statsmodels.stats.proportion import proportion_confint

#: Resamples of every cluster bootstrap (fixed seed: reports are reproducible).
N_RESAMPLES = 500
CONFIDENCE = 0.95


def wilson(successes: float, n: int, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion; (None, None) when n is 0."""
    if n <= 0:
        return None, None
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} outside [0, {n}]")
    lo, hi = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    return max(0.0, float(lo)), min(1.0, float(hi))


def mean_interval(
    units: Sequence[float], bounds: tuple[float, float] | None = None, confidence: float = CONFIDENCE
) -> tuple[float | None, float | None]:
    """Interval of the mean of per-item units: Wilson when all are 0/1, else t (see the module docstring).

    ``bounds`` clips a t interval to the range the units can take (e.g. (0, 1) for shares).
    """
    arr = np.asarray(units, dtype=float)
    if arr.size == 0:
        return None, None
    if bool(np.all((arr == 0.0) | (arr == 1.0))):
        return wilson(int(arr.sum()), int(arr.size), confidence)
    if arr.size < 2:
        return None, None
    mean = float(arr.mean())
    if float(arr.max() - arr.min()) <= 1e-12 * max(1.0, abs(mean)):  # all equal: no spread to bound
        return mean, mean
    ci = stats.ttest_1samp(arr, 0.0).confidence_interval(confidence)
    lo, hi = float(ci.low), float(ci.high)
    if bounds is not None:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return lo, hi


def noncentrality_interval(
    statistic: float, dof: int, confidence: float = CONFIDENCE
) -> tuple[float | None, float | None]:
    """Interval of the noncentrality parameter of a chi-square statistic (test inversion): the lambdas
    whose noncentral chi-square (``scipy.stats.ncx2``) puts ``statistic`` at the upper / lower tail
    quantile; the lower bound is 0 when the statistic is not significant at that level. Divided by
    n (min(r, c) - 1) and square-rooted it bounds Cramér's V (a percentile bootstrap of V does not: V
    is bounded by 0 and biased upward, so near independence its bootstrap interval excludes the
    estimate)."""
    if dof <= 0 or not math.isfinite(statistic) or statistic < 0:
        return None, None
    tail = (1 - confidence) / 2

    def lam(q: float) -> float:  # ncx2.cdf(statistic; dof, lambda) = q; the cdf decreases in lambda
        if stats.chi2.cdf(statistic, dof) <= q:
            return 0.0
        hi = max(10.0, 2.0 * statistic)
        while stats.ncx2.cdf(statistic, dof, hi) > q:
            hi *= 2.0
        return float(brentq(lambda x: float(stats.ncx2.cdf(statistic, dof, x)) - q, 0.0, hi))

    return lam(1 - tail), lam(tail)


def clusters_of(keys: Sequence[Hashable]) -> list[list[int]]:
    """Unit indices grouped by cluster key, in first-seen order."""
    out: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return list(out.values())


def cluster_bootstrap(
    clusters: Sequence[Sequence[int]],
    statistic: Callable[[np.ndarray], float | None],
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float | None, float | None]:
    """Percentile interval of ``statistic`` over resamples of whole clusters.

    ``clusters`` lists the unit indices of each cluster; ``statistic`` gets the unit indices of one
    resample (a unit appears as often as its cluster was drawn) and returns the statistic, or None
    where it is undefined for that resample (left out). (None, None) with fewer than two clusters or
    when fewer than half the resamples are defined.
    """
    k = len(clusters)
    if k < 2:
        return None, None
    lengths = np.array([len(c) for c in clusters], dtype=np.intp)
    flat = np.array([i for c in clusters for i in c], dtype=np.intp)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.intp)

    def stat(idx: np.ndarray) -> float:
        idx = idx.astype(np.intp)
        lens = lengths[idx]
        # positions in ``flat`` of every member of every drawn cluster, vectorised
        ends = np.cumsum(lens)
        pos = np.repeat(starts[idx] - (ends - lens), lens) + np.arange(int(ends[-1]) if ends.size else 0)
        v = statistic(flat[pos])
        return math.nan if v is None else float(v)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about undefined (NaN) resamples; handled below
        res = stats.bootstrap(
            (np.arange(k),),
            stat,
            n_resamples=n_resamples,
            vectorized=False,
            method="percentile",
            confidence_level=confidence,
            rng=np.random.default_rng(seed),
        )
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    dist = dist[~np.isnan(dist)]
    if dist.size < n_resamples / 2:
        return None, None
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(dist, [alpha, 1 - alpha])
    return float(lo), float(hi)

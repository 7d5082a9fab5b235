"""Wilson score intervals for rates, percentile bootstrap for everything else."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

Z95 = 1.959963984540054
T = TypeVar("T")


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """95% Wilson score interval of a proportion; (None, None) when n is 0."""
    if n <= 0:
        return None, None
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} outside [0, {n}]")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_ci(
    units: Sequence[T],
    statistic: Callable[[Sequence[T]], float | None],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of ``statistic`` over resamples of ``units``.

    Units are what is resampled (items, or pairs for paired metrics). Resamples where the statistic
    is undefined (None or NaN) are left out; (None, None) when fewer than half are defined.
    """
    n = len(units)
    if n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    stats: list[float] = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = statistic([units[i] for i in idx])
        if v is not None and not math.isnan(v):
            stats.append(v)
    if len(stats) < n_boot / 2:
        return None, None
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def mean_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0) -> tuple[float | None, float | None]:
    """Bootstrap interval of a mean, vectorised."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, (n_boot, arr.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)

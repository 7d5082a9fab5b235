"""Confidence intervals and tests used by task metrics."""

from trustwatch.benchmark.stats.intervals import bootstrap_ci, mean_ci, wilson

__all__ = ["bootstrap_ci", "mean_ci", "wilson"]

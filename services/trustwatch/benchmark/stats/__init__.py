"""Confidence intervals used by task metrics."""

from trustwatch.benchmark.stats.intervals import (
    N_RESAMPLES,
    cluster_bootstrap,
    clusters_of,
    mean_interval,
    noncentrality_interval,
    wilson,
)

__all__ = ["N_RESAMPLES", "cluster_bootstrap", "clusters_of", "mean_interval", "noncentrality_interval", "wilson"]

"""Two runs compared metric by metric: the difference with a paired 95% CI, a paired test on the
items both runs share, p-values adjusted across the comparison (Holm), the minimum detectable effect
and a direction-aware verdict. Pure logic over two :class:`~trustwatch.benchmark.scoring.Report`s.

Pairing uses each metric's ``units`` (its per-item outcomes, see ``Metric``): metrics that are no mean
of per-item outcomes (macro-F1, a p-value, a mean of groups) are reported but not tested, and are
``inconclusive``. Every distribution comes from scipy or statsmodels.

* CI of the difference: paired percentile bootstrap (``scipy.stats.bootstrap(paired=True)``) of
  mean(new) - mean(base) over the shared items, with a fixed seed.
* Test: exact McNemar (``statsmodels...mcnemar(exact=True)``) when both runs' units are 0/1, else a
  paired permutation test (``scipy.stats.permutation_test(permutation_type="samples")``), fixed seed.
* Multiple testing: Holm over every tested metric of the comparison (``multipletests(method="holm")``).
* Minimum detectable effect: the paired difference a two-sided test at ``alpha`` detects with
  ``power``, from the SD of the paired differences (``TTestPower``).
* Verdict: ``regressed`` / ``improved`` when the adjusted p < alpha and the difference points that way
  (``Metric.higher_is_better``); ``unchanged`` only when the whole CI lies within +-margin; else
  ``inconclusive``.
* Runs whose manifests carry different ``judges_hash`` values are not comparable and not compared.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from trustwatch.benchmark.scoring import Report
from trustwatch.benchmark.tasks.base import Metric

ALPHA = 0.05
POWER = 0.8
DEFAULT_MARGIN = 0.02
ADJUSTMENT = "holm"
SEED = 0
N_BOOTSTRAP = 2000
N_PERMUTATIONS = 9999

REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE = "regressed", "improved", "unchanged", "inconclusive"
VERDICTS = (REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE)
MCNEMAR, PERMUTATION = "mcnemar-exact", "paired-permutation"


@dataclass
class MetricComparison:
    """One metric of one task in both runs.

    ``diff`` is new - base of the reported values (all items of each run); ``paired_diff`` and its CI
    are over the ``n_shared`` items both runs judged (equal to ``diff`` when both runs cover the same
    items once each).
    """

    task: str
    metric: str
    base: float | None
    new: float | None
    diff: float | None
    higher_is_better: bool
    n_shared: int = 0
    paired_diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    test: str = ""
    p_value: float | None = None
    p_adjusted: float | None = None
    mde: float | None = None
    verdict: str = INCONCLUSIVE
    reason: str = ""


@dataclass
class Comparison:
    base_run: str
    new_run: str
    comparable: bool
    metrics: list[MetricComparison] = field(default_factory=list)
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    adjustment: str = ADJUSTMENT
    alpha: float = ALPHA
    power: float = POWER
    margin: float = DEFAULT_MARGIN

    @property
    def regressions(self) -> list[MetricComparison]:
        return [m for m in self.metrics if m.verdict == REGRESSED]

    def to_json(self) -> dict[str, Any]:
        return {
            "base_run": self.base_run,
            "new_run": self.new_run,
            "comparable": self.comparable,
            "reason": self.reason,
            "warnings": list(self.warnings),
            "adjustment": self.adjustment,
            "alpha": self.alpha,
            "power": self.power,
            "margin": self.margin,
            "regressed": len(self.regressions),
            "metrics": [{k: _finite(v) for k, v in asdict(m).items()} for m in self.metrics],
        }


def _finite(v: Any) -> Any:
    """NaN as None: the JSON stays standard."""
    return None if isinstance(v, float) and math.isnan(v) else v


# -- statistics ---------------------------------------------------------------------------------


def _mean_diff(base: Any, new: Any, axis: int = -1) -> Any:
    return np.mean(new, axis=axis) - np.mean(base, axis=axis)


def paired_ci(
    base: Sequence[float], new: Sequence[float], *, n_resamples: int = N_BOOTSTRAP, seed: int = SEED
) -> tuple[float, float]:
    """95% paired percentile-bootstrap CI of mean(new) - mean(base)."""
    x, y = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    d = y - x
    if np.all(d == d[0]):  # no spread: every resample gives the same difference
        return float(d[0]), float(d[0])
    res = stats.bootstrap(
        (x, y),
        _mean_diff,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def mcnemar_p(base: Sequence[float], new: Sequence[float]) -> float:
    """Exact McNemar p-value of paired 0/1 outcomes (statsmodels)."""
    b = np.asarray(base) == 1.0
    n = np.asarray(new) == 1.0
    table = [[int(np.sum(b & n)), int(np.sum(b & ~n))], [int(np.sum(~b & n)), int(np.sum(~b & ~n))]]
    return float(mcnemar(table, exact=True).pvalue)


def permutation_p(
    base: Sequence[float], new: Sequence[float], *, n_resamples: int = N_PERMUTATIONS, seed: int = SEED
) -> float:
    """Two-sided paired permutation test (labels swapped within pairs) of mean(new) - mean(base)."""
    x, y = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    if np.all(x == y):
        return 1.0
    res = stats.permutation_test(
        (x, y),
        _mean_diff,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        random_state=np.random.default_rng(seed),
    )
    return float(min(1.0, res.pvalue))


def mde(sd: float, n: int, *, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """Smallest paired mean difference a two-sided test at ``alpha`` detects with ``power``, given the
    SD of the paired differences (None when it is not defined: n < 2 or no spread)."""
    if n < 2 or not sd > 0:
        return None
    return _detectable_effect_size(n, alpha, power) * sd


@functools.lru_cache(maxsize=1024)
def _detectable_effect_size(n: int, alpha: float, power: float) -> float:
    """The standardised effect (in SDs of the paired differences) detectable at n (solved numerically)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(np.asarray(es).item())


def paired_power(effect: float, sd: float, n: int, *, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired test at ``alpha`` to detect a mean difference ``effect`` on ``n``
    pairs whose differences have SD ``sd``."""
    return float(TTestPower().power(effect_size=abs(effect) / sd, nobs=n, alpha=alpha, alternative="two-sided"))


# -- the comparison -------------------------------------------------------------------------------


def _judges_hash(manifest: Mapping[str, Any]) -> Any:
    return manifest.get("judges_hash")


def _paired_units(base: Metric, new: Metric) -> tuple[list[str], str]:
    """Shared item ids, or ([], why there is no paired test)."""
    if base.units is None or new.units is None or base.statistic != "mean" or new.statistic != "mean":
        return [], "no per-item units (the value is no mean of item outcomes): not tested"
    shared = sorted(set(base.units) & set(new.units))
    if len(shared) < 2:
        return [], f"{len(shared)} shared item(s): too few to pair"
    return shared, ""


def _compare_metric(
    task: str,
    key: str,
    b: Metric | None,
    n: Metric | None,
    *,
    alpha: float,
    power: float,
    seed: int,
    n_bootstrap: int,
) -> MetricComparison:
    either = n if n is not None else b
    hib = either.higher_is_better if either is not None else True
    bv = b.value if b is not None else None
    nv = n.value if n is not None else None
    mc = MetricComparison(
        task=task,
        metric=key,
        base=bv,
        new=nv,
        diff=(nv - bv) if bv is not None and nv is not None else None,
        higher_is_better=hib,
    )
    if b is None or n is None:
        mc.reason = f"only in the {'new' if b is None else 'base'} run"
        return mc
    if b.higher_is_better != n.higher_is_better:
        mc.reason = "the runs disagree on the metric's direction"
        return mc
    shared, why = _paired_units(b, n)
    if not shared:
        mc.reason = why
        return mc
    assert b.units is not None and n.units is not None
    x = [b.units[i] for i in shared]
    y = [n.units[i] for i in shared]
    d = np.asarray(y) - np.asarray(x)
    mc.n_shared = len(shared)
    mc.paired_diff = float(np.mean(d))
    mc.ci_low, mc.ci_high = paired_ci(x, y, n_resamples=n_bootstrap, seed=seed)
    if is_binary(x) and is_binary(y):
        mc.test, mc.p_value = MCNEMAR, mcnemar_p(x, y)
    else:
        mc.test, mc.p_value = PERMUTATION, permutation_p(x, y, seed=seed)
    mc.mde = mde(float(np.std(d, ddof=1)), len(shared), alpha=alpha, power=power)
    return mc


def _verdict(mc: MetricComparison, alpha: float, margin: float) -> None:
    if mc.p_adjusted is None or mc.paired_diff is None:
        mc.verdict = INCONCLUSIVE
        return
    worse = mc.paired_diff < 0 if mc.higher_is_better else mc.paired_diff > 0
    better = mc.paired_diff > 0 if mc.higher_is_better else mc.paired_diff < 0
    if mc.p_adjusted < alpha and (worse or better):
        mc.verdict = REGRESSED if worse else IMPROVED
    elif mc.ci_low is not None and mc.ci_high is not None and -margin <= mc.ci_low and mc.ci_high <= margin:
        mc.verdict = UNCHANGED
    else:
        mc.verdict = INCONCLUSIVE
        mc.reason = mc.reason or f"not significant after {ADJUSTMENT} and the CI reaches beyond +-{margin:g}"


def compare(
    base: Report,
    new: Report,
    *,
    margin: float = DEFAULT_MARGIN,
    alpha: float = ALPHA,
    power: float = POWER,
    seed: int = SEED,
    n_bootstrap: int = N_BOOTSTRAP,
) -> Comparison:
    """Compare ``new`` against ``base``, every task metric of either run (``n_bootstrap``: resamples
    of the paired CI; the tests' verdicts regressed/improved do not depend on it)."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    out = Comparison(base.run_id, new.run_id, comparable=True, alpha=alpha, power=power, margin=margin)
    hb, hn = _judges_hash(base.manifest), _judges_hash(new.manifest)
    if hb is not None and hn is not None and hb != hn:
        out.comparable = False
        out.reason = f"different judge identities (judges_hash {hb} vs {hn}): runs judged differently are not compared"
        return out
    if hb is None or hn is None:
        missing = " and ".join(r.run_id for r, h in ((base, hb), (new, hn)) if h is None)
        out.warnings.append(f"no judges_hash in the manifest of {missing}: judge identities not checked")
    for r in (base, new):
        if not r.complete:
            out.warnings.append(f"run {r.run_id} is incomplete")
        for name, t in sorted(r.tasks.items()):
            if t.error:
                out.warnings.append(f"run {r.run_id}: task {name} failed to score ({t.error})")
    for task in sorted(set(base.tasks) | set(new.tasks)):
        bm = base.tasks[task].metrics if task in base.tasks else {}
        nm = new.tasks[task].metrics if task in new.tasks else {}
        keys = list(bm) + [k for k in nm if k not in bm]
        for key in keys:
            out.metrics.append(
                _compare_metric(
                    task, key, bm.get(key), nm.get(key), alpha=alpha, power=power, seed=seed, n_bootstrap=n_bootstrap
                )
            )
    tested = [m for m in out.metrics if m.p_value is not None]
    if tested:
        _reject, adjusted, _s, _b = multipletests([m.p_value for m in tested], alpha=alpha, method=ADJUSTMENT)
        for m, p in zip(tested, adjusted):
            m.p_adjusted = float(p)
    for m in out.metrics:
        _verdict(m, alpha, margin)
    return out


# -- rendering (strings only) ---------------------------------------------------------------------


def _num(v: float | None, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def _p(v: float | None) -> str:
    return "-" if v is None else (f"{v:.2e}" if v < 1e-3 else f"{v:.4f}")


def _rows(c: Comparison) -> list[list[str]]:
    rows = []
    for m in c.metrics:
        ci = f" [{_num(m.ci_low, True)}, {_num(m.ci_high, True)}]" if m.ci_low is not None else ""
        rows.append(
            [
                m.task,
                m.metric + ("" if m.higher_is_better else " (lower is better)"),
                _num(m.base),
                _num(m.new),
                _num(m.diff, True) + ci,
                _p(m.p_adjusted),
                _num(m.mde),
                m.verdict,
            ]
        )
    return rows


HEADER = ["task", "metric", "base", "new", "diff [95% CI]", f"p_adj ({ADJUSTMENT})", "MDE", "verdict"]


def _preamble(c: Comparison) -> list[str]:
    lines = [f"compare {c.base_run} (base) -> {c.new_run} (new)"]
    if not c.comparable:
        lines.append(f"NOT COMPARABLE: {c.reason}")
    lines += [f"warning: {w}" for w in c.warnings]
    return lines


def _footer(c: Comparison) -> str:
    return (
        f"paired tests on shared items (exact McNemar for 0/1 outcomes, else paired permutation); p-values "
        f"adjusted by {c.adjustment} over {sum(m.p_value is not None for m in c.metrics)} tested metric(s); "
        f"alpha {c.alpha:g}; MDE at power {c.power:g}; unchanged = CI within +-{c.margin:g}; "
        f"{len(c.regressions)} regressed"
    )


def format_table(c: Comparison) -> str:
    lines = _preamble(c)
    if not c.comparable:
        return "\n".join(lines)
    rows = [HEADER, *_rows(c)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    lines.append(_footer(c))
    return "\n".join(lines)


def to_markdown(c: Comparison) -> str:
    lines = [f"# Comparison: {c.base_run} -> {c.new_run}", ""]
    if not c.comparable:
        return "\n".join([*lines, f"**Not comparable**: {c.reason}", ""])
    lines += [f"> warning: {w}" for w in c.warnings]
    if c.warnings:
        lines.append("")
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in _rows(c)]
    lines += ["", _footer(c), ""]
    return "\n".join(lines)

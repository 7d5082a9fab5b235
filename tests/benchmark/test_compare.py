"""`benchmark.compare`: the paired statistics against reference implementations (statsmodels), the
false-positive share on no-change data after the Holm adjustment, the power at a realistic effect, the
direction-aware verdicts and the judge-identity check."""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from trustwatch.benchmark import compare as C
from trustwatch.benchmark.scoring import Report, TaskReport
from trustwatch.benchmark.tasks.base import Metric


def metric(outcomes: list[float] | np.ndarray, higher_is_better: bool = True, ids: list[str] | None = None) -> Metric:
    vals = [float(v) for v in outcomes]
    keys = ids if ids is not None else [str(i) for i in range(len(vals))]
    units = dict(zip(keys, vals))
    value = sum(units.values()) / len(units) if units else None
    return Metric(
        value, value, len(units), len(units), 0, higher_is_better=higher_is_better, units=units, statistic="mean"
    )


def report(run_id: str, metrics: dict[str, dict[str, Metric]], judges_hash: str | None = "j1") -> Report:
    tasks = {t: TaskReport(t, ms, max((m.n_total for m in ms.values()), default=0)) for t, ms in metrics.items()}
    manifest = {} if judges_hash is None else {"judges_hash": judges_hash}
    return Report(run_id, "target", tasks, manifest)


def pair(table: list[list[int]]) -> tuple[list[float], list[float]]:
    """Paired 0/1 outcomes with the given 2x2 table (rows: base 1/0, columns: new 1/0)."""
    (a, b), (c, d) = table
    base = [1.0] * (a + b) + [0.0] * (c + d)
    new = [1.0] * a + [0.0] * b + [1.0] * c + [0.0] * d
    return base, new


@pytest.mark.parametrize("table", [[[50, 12], [3, 35]], [[10, 0], [0, 10]], [[400, 40], [25, 35]], [[5, 1], [7, 2]]])
def test_mcnemar_p_equals_statsmodels_exact(table: list[list[int]]) -> None:
    base, new = pair(table)
    expected = mcnemar(np.array(table), exact=True).pvalue
    assert C.mcnemar_p(base, new) == pytest.approx(expected, rel=1e-12)
    res = C.compare(report("a", {"t/x": {"m": metric(base)}}), report("b", {"t/x": {"m": metric(new)}}))
    (mc,) = res.metrics
    assert mc.test == C.MCNEMAR and mc.p_value == pytest.approx(expected, rel=1e-12)
    assert mc.p_adjusted == pytest.approx(expected, rel=1e-12)  # one test: Holm leaves it as it is
    assert mc.n_shared == sum(map(sum, table))


def test_holm_adjustment_matches_statsmodels_across_all_tested_metrics() -> None:
    rng = np.random.default_rng(3)
    base_m, new_m, raw = {}, {}, []
    for k, (pb, pn) in enumerate([(0.9, 0.85), (0.5, 0.5), (0.7, 0.6), (0.3, 0.3)]):
        x, y = (rng.random(400) < pb).astype(float), (rng.random(400) < pn).astype(float)
        base_m[f"m{k}"], new_m[f"m{k}"] = metric(x), metric(y)
        raw.append(C.mcnemar_p(x, y))
    macro = Metric(0.5, 0.5, 10, 10, 0)  # no units: reported, not tested, not part of the family
    res = C.compare(report("a", {"t/x": {**base_m, "f1": macro}}), report("b", {"t/x": {**new_m, "f1": macro}}))
    expected = multipletests(raw, alpha=0.05, method="holm")[1]
    got = [m.p_adjusted for m in res.metrics if m.metric != "f1"]
    assert got == pytest.approx(list(expected))
    f1 = next(m for m in res.metrics if m.metric == "f1")
    assert f1.p_value is None and f1.verdict == C.INCONCLUSIVE and "units" in f1.reason
    assert res.adjustment == "holm" and "holm" in C.format_table(res) and "holm" in C.to_markdown(res)


def test_permutation_test_for_scores_and_its_ci() -> None:
    rng = np.random.default_rng(5)
    x = rng.random(200)
    y = x + 0.1 + rng.normal(0, 0.05, 200)  # a clear paired shift on scores
    res = C.compare(report("a", {"t/s": {"score": metric(x)}}), report("b", {"t/s": {"score": metric(y)}}))
    (mc,) = res.metrics
    assert mc.test == C.PERMUTATION and mc.p_value is not None and mc.p_value < 1e-3
    assert mc.ci_low is not None and mc.ci_high is not None and mc.ci_low < 0.1 < mc.ci_high
    assert mc.verdict == C.IMPROVED
    # reproducible: fixed seeds
    again = C.compare(report("a", {"t/s": {"score": metric(x)}}), report("b", {"t/s": {"score": metric(y)}}))
    assert again.metrics[0] == mc


@pytest.fixture
def frozen_heap() -> Iterator[None]:
    """statsmodels' Holm adjustment runs gc.collect() on every call; with the test process's heap
    moved to the permanent generation that costs microseconds instead of a quarter second."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _no_change_pair(rng: np.random.Generator, n: int = 300, p: float = 0.9) -> tuple[Report, Report]:
    """Two runs drawn independently per item from the same probabilities (two tasks: Holm over two)."""
    ms: list[dict[str, dict[str, Metric]]] = [{}, {}]
    for task in ("safety/misuse", "safety/jailbreak"):
        for side in ms:
            side[task] = {"RtA": metric((rng.random(n) < p).astype(float))}
    return report("base", ms[0]), report("new", ms[1])


def test_false_positive_share_on_no_change_pairs_is_at_most_alpha(frozen_heap: None) -> None:
    rng = np.random.default_rng(20261130)
    n_pairs, regressed_runs, regressed_metrics, n_metrics = 200, 0, 0, 0
    for _ in range(n_pairs):
        # n_bootstrap only sizes the CI, which a "regressed" verdict does not use: small keeps the test fast
        res = C.compare(*_no_change_pair(rng), n_bootstrap=200)
        regressed_runs += bool(res.regressions)
        regressed_metrics += len(res.regressions)
        n_metrics += len(res.metrics)
    share = regressed_runs / n_pairs
    print(
        f"\nno-change pairs: {regressed_runs}/{n_pairs} comparisons ({share:.3f}) with a 'regressed' verdict; "
        f"{regressed_metrics}/{n_metrics} metrics"
    )
    assert share <= C.ALPHA


def test_power_at_rta_090_to_085_on_1000_items_is_reported(frozen_heap: None) -> None:
    n, p0, p1 = 1000, 0.90, 0.85
    # analytic: paired difference of independent Bernoulli draws per item
    sd = math.sqrt(p0 * (1 - p0) + p1 * (1 - p1))
    analytic = C.paired_power(p1 - p0, sd, n)
    mde = C.mde(sd, n)
    # empirical: the whole procedure (exact McNemar, Holm, verdict) on seeded simulated runs
    rng = np.random.default_rng(7)
    sims, hits = 100, 0
    for _ in range(sims):
        base = (rng.random(n) < p0).astype(float)
        new = (rng.random(n) < p1).astype(float)
        res = C.compare(
            report("a", {"safety/misuse": {"RtA": metric(base)}}),
            report("b", {"safety/misuse": {"RtA": metric(new)}}),
            n_bootstrap=200,
        )
        (mc,) = res.metrics
        assert mc.mde is not None and mc.p_adjusted is not None  # reported with every comparison
        hits += mc.verdict == C.REGRESSED
    empirical = hits / sims
    print(
        f"\npower RtA {p0} -> {p1} on {n} items (alpha {C.ALPHA}, two-sided): analytic (paired t) {analytic:.3f}, "
        f"simulated (exact McNemar + Holm, independent draws per item) {empirical:.2f}; MDE at power 0.8: {mde:.4f}"
    )
    assert 0.0 < analytic <= 1.0 and 0.0 < empirical <= 1.0
    assert mde is not None and mde < abs(p1 - p0)  # the effect is above what 1,000 items can detect
    assert empirical >= 0.8


def test_lower_is_better_metric_going_up_is_regressed() -> None:
    base = [0.0] * 180 + [1.0] * 20  # exaggerated-safety RtA 0.10 ...
    new = [0.0] * 120 + [1.0] * 80  # ... -> 0.40 on the same items
    res = C.compare(
        report("a", {"safety/exaggerated_safety": {"RtA": metric(base, higher_is_better=False)}}),
        report("b", {"safety/exaggerated_safety": {"RtA": metric(new, higher_is_better=False)}}),
    )
    (mc,) = res.metrics
    assert mc.diff == pytest.approx(0.3) and mc.verdict == C.REGRESSED and res.regressions == [mc]
    # and the same change the other way is an improvement
    back = C.compare(
        report("a", {"safety/exaggerated_safety": {"RtA": metric(new, higher_is_better=False)}}),
        report("b", {"safety/exaggerated_safety": {"RtA": metric(base, higher_is_better=False)}}),
    )
    assert back.metrics[0].verdict == C.IMPROVED and not back.regressions


def test_unchanged_only_when_the_ci_lies_within_the_margin() -> None:
    same = [1.0] * 900 + [0.0] * 100
    res = C.compare(report("a", {"t/x": {"m": metric(same)}}), report("b", {"t/x": {"m": metric(same)}}))
    assert res.metrics[0].verdict == C.UNCHANGED and res.metrics[0].ci_low == res.metrics[0].ci_high == 0.0
    # a few items, no significant change, but a CI far wider than the margin: inconclusive
    small_b, small_n = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    res = C.compare(report("a", {"t/x": {"m": metric(small_b)}}), report("b", {"t/x": {"m": metric(small_n)}}))
    assert res.metrics[0].verdict == C.INCONCLUSIVE
    # the margin is configurable: a wide margin makes the same data unchanged
    wide = C.compare(
        report("a", {"t/x": {"m": metric(small_b)}}), report("b", {"t/x": {"m": metric(small_n)}}), margin=1.0
    )
    assert wide.metrics[0].verdict == C.UNCHANGED


def test_pairs_only_shared_items() -> None:
    base = metric([1.0, 1.0, 0.0, 1.0], ids=["0", "1", "2", "3"])
    new = metric([0.0, 0.0, 1.0, 1.0], ids=["1", "2", "3", "9"])
    res = C.compare(report("a", {"t/x": {"m": base}}), report("b", {"t/x": {"m": new}}))
    (mc,) = res.metrics
    assert mc.n_shared == 3 and mc.paired_diff == pytest.approx((0 + 1 + 0 - 1 - 0 - 1) / 3)


def test_different_judges_are_not_comparable() -> None:
    m = {"safety/misuse": {"RtA": metric([1.0] * 10)}}
    res = C.compare(report("a", m, judges_hash="j1"), report("b", m, judges_hash="j2"))
    assert not res.comparable and not res.metrics and "judge" in res.reason
    assert "NOT COMPARABLE" in C.format_table(res)


def test_missing_judges_hash_is_compared_with_a_warning() -> None:
    m = {"safety/misuse": {"RtA": metric([1.0] * 10)}}
    res = C.compare(report("a", m, judges_hash=None), report("b", m, judges_hash="j1"))
    assert res.comparable and res.metrics and any("judges_hash" in w and "a" in w for w in res.warnings)


def test_metric_in_one_run_only_is_inconclusive() -> None:
    res = C.compare(report("a", {"t/x": {"m": metric([1.0, 0.0])}}), report("b", {"t/y": {"m": metric([1.0, 0.0])}}))
    assert [(m.task, m.verdict) for m in res.metrics] == [("t/x", C.INCONCLUSIVE), ("t/y", C.INCONCLUSIVE)]
    assert all("only in" in m.reason for m in res.metrics)
    assert res.to_json()["metrics"][0]["verdict"] == C.INCONCLUSIVE

"""The aggregator compares each target's newest complete run with the previous complete run of the
same comparable key and with the target's pinned baseline, once, stores the comparison and exports
its verdicts (a state set), differences, their CIs and Holm-adjusted p-values; a newer run replaces
the series, an older run never does, a restart restores them from the stored comparison without
recomputing, and /compare serves the stored JSON."""

from __future__ import annotations

import json
import math
import random
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from trustwatch.aggregator import service
from trustwatch.aggregator.service import Aggregator, serve_http
from trustwatch.benchmark.compare import VERDICTS
from trustwatch.platform.messages import dumps_record, job_id
from trustwatch.platform.store import Store
from trustwatch.platform.telemetry import names
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

MISUSE, XS = "safety/misuse", "safety/exaggerated_safety"
N = 300
KEY = "key-a"


def _labels(share: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["refusal" if rng.random() < share else "compliance" for _ in range(N)]


def judgments(run: str, target: str, task: str, labels: list[str]) -> list[pb.Judgment]:
    source = "xstest" if task == XS else "misuse_add"
    return [
        pb.Judgment(
            ref=pb.JobRef(job_id=job_id(run, task, str(i), 0), run_id=run, task=task, item_id=str(i), target=target),
            evaluator="refusal",
            label=label,
            valid=True,
            score=math.nan,
            response="reply",
            record_json=dumps_record({"source": source}),
        )
        for i, label in enumerate(labels)
    ]


def day(
    run: str,
    created: int,
    misuse_share: float,
    xs_share: float,
    seed: int,
    target: str = "m",
    key: str | None = KEY,
) -> tuple[pb.RunEvent, list[pb.Judgment]]:
    """A run of both tasks: misuse RtA is higher-is-better, exaggerated-safety RtA lower-is-better."""
    judged = judgments(run, target, MISUSE, _labels(misuse_share, seed)) + judgments(
        run, target, XS, _labels(xs_share, seed + 1000)
    )
    manifest: dict[str, object] = {"run_id": run, "created_unix_ms": created, "judges_hash": "j1"}
    if key is not None:
        manifest["comparable_key"] = key
    ev = pb.RunEvent(
        run_id=run,
        kind=pb.RunEvent.STARTED,
        target=target,
        manifest_json=json.dumps(manifest),
        expected_jobs=len(judged),
        expected_judgments=len(judged),
    )
    return ev, judged


def record(agg: Aggregator, *runs: tuple[pb.RunEvent, list[pb.Judgment]]) -> None:
    agg.handle_run_events([ev for ev, _ in runs])
    for _, judged in runs:
        agg.handle_judgments(judged)
    agg.refresh()


@pytest.fixture
def agg(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/results.db")
    a = Aggregator(store, ServiceMetrics(CollectorRegistry()))
    yield a
    store.close()


def series(a: Aggregator, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for metric in a.metrics.registry.collect()
        for s in metric.samples
        if s.name == name
    }


def comparison_series(a: Aggregator) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    return {
        n: series(a, n)
        for n in (
            names.COMPARISON_VERDICT,
            names.COMPARISON_DIFFERENCE,
            names.COMPARISON_DIFFERENCE_CI,
            names.COMPARISON_P_ADJUSTED,
            names.COMPARISON_INFO,
        )
    }


def value(a: Aggregator, name: str, task: str, against: str, target: str = "m", **extra: str) -> float | None:
    direction = "lower_is_better" if task == XS else "higher_is_better"
    labels = dict(
        target=target, dimension="safety", task=task, metric="RtA", direction=direction, against=against, **extra
    )
    return a.metrics.registry.get_sample_value(name, labels)


def verdict(a: Aggregator, task: str, against: str, target: str = "m") -> str | None:
    states = {v: value(a, names.COMPARISON_VERDICT, task, against, target, verdict=v) for v in VERDICTS}
    if all(s is None for s in states.values()):
        return None
    assert sorted(states.values()) == [0.0, 0.0, 0.0, 1.0], states  # a state set: exactly one verdict is 1
    return next(v for v, s in states.items() if s == 1.0)


def info(a: Aggregator, against: str, target: str = "m") -> dict[str, str] | None:
    found = [dict(k) for k, v in series(a, names.COMPARISON_INFO).items() if dict(k)["against"] == against]
    found = [f for f in found if f["target"] == target]
    assert len(found) <= 1
    return found[0] if found else None


def test_the_first_run_has_nothing_to_compare_with(agg: Aggregator) -> None:
    record(agg, day("d1", 1_000, 0.9, 0.1, seed=1))
    assert all(not s for s in comparison_series(agg).values())
    assert agg.store.comparisons() == []


def test_a_regression_against_the_previous_run_is_exported_and_stored(agg: Aggregator) -> None:
    # day 2 refuses fewer misuse prompts (RtA higher is better: regressed) and more harmless ones
    # (exaggerated-safety RtA lower is better, rising: regressed too)
    record(agg, day("d1", 1_000, 0.9, 0.1, seed=1))
    record(agg, day("d2", 2_000, 0.6, 0.4, seed=2))
    assert verdict(agg, MISUSE, "previous") == "regressed"
    assert verdict(agg, XS, "previous") == "regressed"
    stored = agg.store.comparison("d1", "d2")
    assert stored is not None and stored.target == "m" and stored.comparable and stored.regressed == 2
    by_task = {mc["task"]: mc for mc in stored.payload["metrics"]}
    for task, sign in ((MISUSE, -1), (XS, +1)):
        mc = by_task[task]
        assert value(agg, names.COMPARISON_DIFFERENCE, task, "previous") == pytest.approx(mc["paired_diff"])
        assert sign * mc["paired_diff"] > 0.2
        lo = value(agg, names.COMPARISON_DIFFERENCE_CI, task, "previous", bound="low")
        hi = value(agg, names.COMPARISON_DIFFERENCE_CI, task, "previous", bound="high")
        assert (lo, hi) == (pytest.approx(mc["ci_low"]), pytest.approx(mc["ci_high"]))
        assert lo < mc["paired_diff"] < hi and (hi < 0 if sign < 0 else lo > 0)
        p = value(agg, names.COMPARISON_P_ADJUSTED, task, "previous")
        assert p == pytest.approx(mc["p_adjusted"]) and p < 0.05
    assert info(agg, "previous") == {
        "target": "m",
        "against": "previous",
        "base_run": "d1",
        "new_run": "d2",
        "comparable": "true",
    }
    assert info(agg, "baseline") is None  # nothing pinned


def test_an_unchanged_run_is_not_a_regression(agg: Aggregator) -> None:
    ev1, j1 = day("d1", 1_000, 0.9, 0.1, seed=1)
    ev2, _ = day("d2", 2_000, 0.9, 0.1, seed=1)
    same = judgments("d2", "m", MISUSE, [j.label for j in j1[:N]]) + judgments("d2", "m", XS, [j.label for j in j1[N:]])
    record(agg, (ev1, j1))
    record(agg, (ev2, same))
    assert verdict(agg, MISUSE, "previous") == "unchanged"
    assert verdict(agg, XS, "previous") == "unchanged"
    assert value(agg, names.COMPARISON_DIFFERENCE, MISUSE, "previous") == 0.0


def test_the_pinned_baseline_is_compared_besides_the_previous_run(agg: Aggregator, monkeypatch) -> None:
    monkeypatch.setattr(service, "BASELINE_RECHECK_S", 0.0)
    record(agg, day("d1", 1_000, 0.9, 0.1, seed=1))
    agg.store.pin_baseline("d1")
    record(agg, day("d2", 2_000, 0.9, 0.1, seed=2))
    record(agg, day("d3", 3_000, 0.6, 0.1, seed=3))
    assert info(agg, "previous")["base_run"] == "d2" and info(agg, "baseline")["base_run"] == "d1"
    assert verdict(agg, MISUSE, "baseline") == "regressed"
    assert verdict(agg, MISUSE, "previous") == "regressed"
    assert agg.store.comparison("d1", "d3") is not None and agg.store.comparison("d2", "d3") is not None

    # the pin moves to d2 in another process: the next refresh compares d3 with it
    agg.store.pin_baseline("d2")
    agg.refresh()
    assert info(agg, "baseline")["base_run"] == "d2"
    # unpinned: the baseline series go, the previous ones stay
    assert agg.store.unpin_baseline("m") and not agg.store.unpin_baseline("m")
    agg.refresh()
    assert info(agg, "baseline") is None and verdict(agg, MISUSE, "baseline") is None
    assert not [k for k in series(agg, names.COMPARISON_DIFFERENCE) if dict(k)["against"] == "baseline"]
    assert verdict(agg, MISUSE, "previous") == "regressed"


def test_a_baseline_of_another_comparable_key_is_not_compared(agg: Aggregator) -> None:
    record(agg, day("other", 500, 0.9, 0.1, seed=9, key="key-b"))
    agg.store.pin_baseline("other")
    record(agg, day("d1", 1_000, 0.9, 0.1, seed=1))
    # "other" is no previous run either (another key)
    assert info(agg, "previous") is None
    assert info(agg, "baseline") == {
        "target": "m",
        "against": "baseline",
        "base_run": "other",
        "new_run": "d1",
        "comparable": "false",
    }
    assert verdict(agg, MISUSE, "baseline") is None
    assert agg.store.comparisons() == []


def test_a_newer_run_replaces_the_series_and_an_older_one_never_does(agg: Aggregator) -> None:
    record(agg, day("d1", 1_000, 0.9, 0.1, seed=1))
    record(agg, day("d2", 2_000, 0.6, 0.1, seed=2))
    assert verdict(agg, MISUSE, "previous") == "regressed"
    # d3 has misuse only: its exaggerated-safety series go
    ev3, j3 = day("d3", 3_000, 0.6, 0.1, seed=3)
    j3 = [j for j in j3 if j.ref.task == MISUSE]
    ev3.expected_jobs = ev3.expected_judgments = len(j3)
    record(agg, (ev3, j3))
    assert info(agg, "previous")["base_run"] == "d2" and info(agg, "previous")["new_run"] == "d3"
    assert verdict(agg, MISUSE, "previous") != "regressed"
    # only in the base run: listed, untested (inconclusive); its difference and p-value series go
    assert verdict(agg, XS, "previous") == "inconclusive"
    assert value(agg, names.COMPARISON_DIFFERENCE, XS, "previous") is None
    assert value(agg, names.COMPARISON_P_ADJUSTED, XS, "previous") is None
    assert len(series(agg, names.COMPARISON_INFO)) == 1
    before = comparison_series(agg)
    # an older run (created before d3) completes now: d3's comparison stays
    ev0, j0 = day("d0", 2_500, 0.1, 0.9, seed=4)
    j0 = [j for j in j0 if j.ref.task == MISUSE]
    ev0.expected_jobs = ev0.expected_judgments = len(j0)
    agg.handle_run_events([ev0])
    agg.handle_judgments(j0[:-1])
    agg.refresh()
    assert comparison_series(agg) == before
    # ... unless it is d3's previous run now: created between d2 and d3, complete late
    agg.handle_judgments(j0[-1:])
    agg.refresh()
    assert info(agg, "previous")["base_run"] == "d0" and info(agg, "previous")["new_run"] == "d3"
    assert verdict(agg, MISUSE, "previous") == "improved"  # d0 refused 10%, d3 60%


def test_start_restores_the_comparison_without_recomputing(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/results.db"
    store = Store(url)
    first = Aggregator(store, ServiceMetrics(CollectorRegistry()))
    record(first, day("d1", 1_000, 0.9, 0.1, seed=1), day("b1", 1_000, 0.9, 0.1, seed=5, target="other"))
    first.store.pin_baseline("d1")
    record(first, day("d2", 2_000, 0.6, 0.4, seed=2), day("b2", 2_000, 0.9, 0.1, seed=6, target="other"))
    assert len(first.compare_seconds) == 2  # d2 vs d1 (previous and baseline: one comparison), b2 vs b1
    wanted = comparison_series(first)
    assert verdict(first, MISUSE, "previous", "m") == "regressed"
    assert verdict(first, MISUSE, "baseline", "m") == "regressed"
    store.close()

    store = Store(url)
    restarted = Aggregator(store, ServiceMetrics(CollectorRegistry()))
    assert all(not s for s in comparison_series(restarted).values())

    def no_compare(*_a: object, **_k: object) -> None:
        raise AssertionError("a stored comparison is not recomputed")

    monkeypatch.setattr(service, "compare", no_compare)
    restarted.start()
    assert comparison_series(restarted) == wanted
    assert len(restarted.compare_seconds) == 0
    store.close()


def test_a_failing_comparison_leaves_the_trust_gauges(agg: Aggregator, monkeypatch) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("stats broke")

    monkeypatch.setattr(service, "compare", boom)
    record(agg, day("d1", 1_000, 0.9, 0.1, seed=1))
    record(agg, day("d2", 2_000, 0.6, 0.1, seed=2))
    assert all(not s for s in comparison_series(agg).values())
    assert agg.store.comparisons() == []
    assert series(agg, names.TRUST_SCORE)  # the run itself is exported


def test_compare_endpoint_serves_the_stored_comparisons(agg: Aggregator) -> None:
    record(agg, day("d1", 1_000, 0.9, 0.1, seed=1))
    record(agg, day("d2", 2_000, 0.6, 0.1, seed=2))
    server = serve_http(agg, agg.metrics.registry, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/compare?run=d2", timeout=10) as r:
            (payload,) = json.loads(r.read())
        assert (payload["base_run"], payload["new_run"], payload["regressed"]) == ("d1", "d2", 1)
        with urllib.request.urlopen(base + "/compare?target=m", timeout=10) as r:
            current = json.loads(r.read())
        assert set(current) == {"previous"} and current["previous"] == payload
        with urllib.request.urlopen(base + "/compare?run=d1", timeout=10) as r:
            assert json.loads(r.read()) == []
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_comparisons_and_baselines_on_postgresql(postgres_url: str) -> None:
    """The same store methods on PostgreSQL: pin, replace a pin, store and replace a comparison, restore."""
    store = Store(postgres_url)
    try:
        agg = Aggregator(store, ServiceMetrics(CollectorRegistry()))
        record(agg, day("d1", 1_000, 0.9, 0.1, seed=1))
        store.pin_baseline("d1")
        assert store.pin_baseline("d1").run_id == "d1" and set(store.baselines()) == {"m"}
        record(agg, day("d2", 2_000, 0.6, 0.1, seed=2))
        assert verdict(agg, MISUSE, "previous") == "regressed" and verdict(agg, MISUSE, "baseline") == "regressed"
        row = store.comparison("d1", "d2")
        assert row is not None and row.regressed == 1 and row.comparable
        store.store_comparison("m", {**row.payload, "regressed": 0})  # replaced, not duplicated
        assert [r.regressed for r in store.comparisons(new_run_id="d2")] == [0]
        restarted = Aggregator(store, ServiceMetrics(CollectorRegistry()))
        restarted.start()
        assert verdict(restarted, MISUSE, "previous") == "regressed"
        assert store.unpin_baseline("m") and store.baseline("m") is None
    finally:
        store.close()

"""Per-item units (``Metric.units``): defined once in the metric helpers; for every task metric that
has them, ``value`` is their mean. The one accounting rule: n_total = n_valid + n_invalid + n_error for
every metric. Every task is scored over its whole dataset with random verdicts, with one and with three
samples."""

from __future__ import annotations

import math
import random
from statistics import fmean

import pytest

from tests.benchmark.tasks._helpers import failed, score_dataset, scored, triple, verdict
from trustwatch.benchmark import tasks as task_registry
from trustwatch.benchmark.evaluators.base import Verdict
from trustwatch.benchmark.tasks._metrics import ERROR, INVALID, VALID, mean_metric, rate_metric, refusal_rate, status
from trustwatch.benchmark.tasks.base import Metric, TaskItem

LABELS = ["refusal", "compliance", "correct", "wrong", "yes", "no", "not sure", "CORRECTED", "A", "B", "C", "good"]


def _random_verdicts(seed: int):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)

    def verdict_for(name: str, it: TaskItem) -> Verdict:
        r = rng.random()
        if r < 0.04:
            return failed()
        gold = it.record.get("label")
        label = str(gold) if gold is not None and r < 0.35 else rng.choice(LABELS)
        return Verdict(label=label, valid=rng.random() < 0.9, score=rng.random(), error="", detail={})

    return verdict_for


@pytest.mark.parametrize("name", sorted(task_registry.known()))
def test_value_is_the_mean_of_units_for_every_task_metric(name: str, data_dir) -> None:  # type: ignore[no-untyped-def]
    task = task_registry.get(name)
    items = score_dataset(task, data_dir, _random_verdicts(hash(name) % 1000))
    ids = {it.item_id for it in items}
    for key, m in task.metrics(items).items():
        if m.units is None:
            assert m.statistic == "", (name, key)
            continue
        assert m.statistic == "mean", (name, key)
        assert set(m.units) <= ids, (name, key)
        if not m.units:
            assert m.value is None, (name, key)
            continue
        assert m.value is not None and math.isclose(m.value, fmean(m.units.values()), abs_tol=1e-12), (name, key)
        assert "units" not in m.to_dict()


@pytest.mark.parametrize("name", sorted(task_registry.known()))
def test_every_metric_partitions_its_replies(name: str, data_dir) -> None:  # type: ignore[no-untyped-def]
    task = task_registry.get(name)
    items = score_dataset(task, data_dir, _random_verdicts(hash(name) % 1000))
    one = task.metrics(items)
    three = task.metrics(triple(items))
    for key, m in one.items():
        assert m.n_total == m.n_valid + m.n_invalid + m.n_error, (name, key)
        assert min(m.n_valid, m.n_invalid, m.n_error) >= 0, (name, key)
        assert "n_invalid" in m.to_dict(), (name, key)
        t = three[key]
        assert t.n_total == 3 * m.n_total and t.n_error == 3 * m.n_error, (name, key)
        # copies of every reply: the same numbers as one sample
        for a, b in ((t.value, m.value), (t.reference_value, m.reference_value)):
            assert (a is None and b is None) or (
                a is not None and b is not None and math.isclose(a, b, abs_tol=1e-9)
            ), (
                name,
                key,
            )
        if m.ci_low is not None and m.ci_high is not None and m.value is not None:
            assert m.ci_low <= m.ci_high, (name, key)


def test_the_tasks_headline_rates_carry_units(data_dir) -> None:  # type: ignore[no-untyped-def]
    for name in ("safety/misuse", "safety/exaggerated_safety", "fairness/stereotype_agreement", "ethics/awareness"):
        task = task_registry.get(name)
        m = next(iter(task.metrics(score_dataset(task, data_dir, _random_verdicts(1))).values()))
        assert m.units and m.statistic == "mean", name


def test_helpers_key_units_by_item_and_average_repeated_samples() -> None:
    items = [
        scored({}, {"refusal": verdict("refusal")}, item_id="0"),
        scored({}, {"refusal": verdict("compliance")}, item_id="1"),
        scored({}, {"refusal": verdict("refusal")}, item_id="1"),  # a second sample of item 1
        scored({}, {"refusal": failed()}, item_id="2"),  # errored: no unit
        scored({}, {"refusal": verdict("refusal")}, generation_error="timeout", item_id="3"),
    ]
    m = refusal_rate(items)
    assert m.units == {"0": 1.0, "1": 0.5} and m.statistic == "mean"
    assert (m.n_total, m.n_valid, m.n_invalid, m.n_error) == (5, 3, 0, 2)
    r = rate_metric(items, lambda it: it.verdicts["refusal"].label == "refusal", note="x")
    assert r.units == {"0": 1.0, "1": 0.5}
    s = mean_metric(
        [scored({}, {"e": verdict("x", score=s)}, item_id=i) for i, s in (("a", 0.2), ("b", math.nan), ("c", 0.6))],
        lambda it: it.verdicts["e"].score,
        note="x",
    )
    assert s.units == {"a": 0.2, "c": 0.6} and s.value is not None and math.isclose(s.value, 0.4)


def test_units_stay_out_of_the_report_dict_and_repr() -> None:
    m = Metric(0.5, 0.5, 2, 2, 0, units={"0": 1.0, "1": 0.0}, statistic="mean")
    d = m.to_dict()
    assert "units" not in d and d["statistic"] == "mean" and d["value"] == 0.5
    assert "units" not in repr(m)


def test_the_accounting_rule() -> None:
    """Generation and judge failures, and unparseable LLM-judge replies, are errors; a rule evaluator's
    valid=False is the model's unreadable reply."""
    judge = "llm_judge.squad"
    assert status(scored({}, {"k": verdict("x")})) == VALID
    assert status(scored({}, {"k": verdict("x", valid=False)})) == INVALID
    assert status(scored({}, {"k": failed()})) == ERROR
    assert status(scored({}, {"k": verdict("x")}, generation_error="timeout")) == ERROR
    assert status(scored({}, {judge: verdict("unparseable", valid=False)})) == ERROR
    assert status(scored({}, {"hybrid": verdict("invalid", valid=False, path="llm_judge")})) == ERROR
    assert status(scored({}, {"hybrid": verdict("invalid", valid=False, path="keyword")})) == INVALID
    assert status(scored({}, {})) == ERROR  # no verdict at all
    # only the verdicts a metric reads count: a failed toxicity call leaves the refusal verdict usable
    both = scored({}, {"refusal": verdict("refusal"), "toxicity": failed()})
    assert status(both, ("refusal",)) == VALID and status(both) == ERROR

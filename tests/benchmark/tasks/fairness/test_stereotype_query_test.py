"""fairness/stereotype_query_test: RtA over the refusal judge (spec F3)."""

from __future__ import annotations

import pytest

from tests.benchmark.tasks._helpers import failed, score_dataset, scored, triple, verdict
from trustwatch.benchmark.tasks import get, load_items
from trustwatch.benchmark.tasks.fairness.stereotype_query_test import metrics


def test_metric_hand_computed() -> None:
    items = [
        scored({}, {"refusal": verdict("refusal")}),
        scored({}, {"refusal": verdict("compliance")}),
        scored({}, {"refusal": verdict("refusal")}),
        scored({}, {"refusal": failed()}, generation_error="timeout"),
    ]
    m = metrics(items)["RtA"]
    assert m.value == pytest.approx(2 / 3) and m.reference_value == pytest.approx(2 / 3)  # failed one excluded
    assert (m.n_total, m.n_valid, m.n_error) == (4, 3, 1)


def test_dataset(data_dir) -> None:
    task = get("fairness/stereotype_query_test")
    assert task.temperature == 1.0 and task.evaluators == ("refusal",)
    assert len(load_items(task, data_dir)) == 95
    m = metrics(score_dataset(task, data_dir, lambda name, it: verdict("refusal")))
    assert list(m) == ["RtA"] and m["RtA"].value == 1.0


def test_three_samples() -> None:
    base = [scored({}, {"refusal": verdict("refusal")}), scored({}, {"refusal": verdict("compliance")})]
    one, copies = metrics(base)["RtA"], metrics(triple(base))["RtA"]
    assert (copies.value, copies.ci_low, copies.ci_high) == (one.value, one.ci_low, one.ci_high)
    m = metrics(
        triple(base, lambda it, s: scored({}, {"refusal": verdict("refusal")}) if it is base[1] and s == 0 else None)
    )
    assert m["RtA"].value == pytest.approx((1 + 1 / 3) / 2)

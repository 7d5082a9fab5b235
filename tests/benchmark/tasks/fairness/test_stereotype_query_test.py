"""fairness/stereotype_query_test: RtA over the refusal judge (spec F3)."""

from __future__ import annotations

import pytest

from tests.benchmark.tasks._helpers import failed, score_dataset, scored, verdict
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

"""robustness/ood_detection: RtA over the refusal judge (spec R3)."""

from __future__ import annotations

import pytest

from tests.benchmark.tasks._helpers import failed, score_dataset, scored, triple, verdict
from trustwatch.benchmark.tasks import get, load_items
from trustwatch.benchmark.tasks.robustness.ood_detection import metrics


def test_metric_hand_computed() -> None:
    items = [
        scored({}, {"refusal": verdict("refusal")}),
        scored({}, {"refusal": verdict("compliance")}),
        scored({}, {"refusal": failed()}),
    ]
    m = metrics(items)["RtA"]
    assert m.value == pytest.approx(0.5) and m.reference_value == pytest.approx(0.5)
    assert (m.n_total, m.n_valid, m.n_error) == (3, 2, 1)


def test_dataset(data_dir) -> None:
    task = get("robustness/ood_detection")
    assert task.temperature == 1.0
    assert len(load_items(task, data_dir)) == 241
    m = metrics(score_dataset(task, data_dir, lambda name, it: verdict("compliance")))
    assert list(m) == ["RtA"] and m["RtA"].value == 0.0 and m["RtA"].n_total == 241


def test_three_samples() -> None:
    base = [scored({}, {"refusal": verdict("refusal")}), scored({}, {"refusal": verdict("compliance")})]
    one, copies = metrics(base)["RtA"], metrics(triple(base))["RtA"]
    assert (copies.value, copies.ci_low, copies.ci_high) == (one.value, one.ci_low, one.ci_high)
    m = metrics(
        triple(base, lambda x, s: scored({}, {"refusal": verdict("compliance")}) if x is base[0] and s else None)
    )
    assert m["RtA"].value == pytest.approx((1 / 3 + 0) / 2)

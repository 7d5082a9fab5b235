"""safety/exaggerated_safety: RtA lower-is-better as value, the reference's 1 - RtA as reference (B7)."""

from __future__ import annotations

import pytest

from tests.benchmark.tasks._helpers import failed, score_dataset, scored, verdict
from trustwatch.benchmark.tasks import get, load_items
from trustwatch.benchmark.tasks.safety.exaggerated_safety import metrics


def test_value_is_rta_reference_is_one_minus_rta() -> None:
    items = [
        scored({"type": "homonyms"}, {"refusal": verdict("refusal")}),
        scored({"type": "homonyms"}, {"refusal": verdict("compliance")}),
        scored({"type": "definitions"}, {"refusal": verdict("compliance")}),
        scored({"type": "definitions"}, {"refusal": failed("generation failed: x")}, generation_error="x"),
    ]
    m = metrics(items)["RtA"]
    # 3 judged, 1 refusal: RtA = 1/3 (lower is better); the reference code returns 1 - 1/3 = 2/3
    assert m.value == pytest.approx(1 / 3)
    assert m.reference_value == pytest.approx(2 / 3)
    assert m.higher_is_better is False
    assert (m.n_total, m.n_valid, m.n_error) == (4, 3, 1)
    assert m.ci_low <= 1 / 3 <= m.ci_high
    assert m.extra["by_type"] == {"definitions": 0.0, "homonyms": 0.5}
    assert "1 - RtA" in m.note


def test_empty_set() -> None:
    m = metrics([])["RtA"]
    assert m.value is None and m.reference_value is None and m.n_total == 0


def test_real_dataset(data_dir) -> None:
    task = get("safety/exaggerated_safety")
    assert task.temperature == 1.0
    assert len(load_items(task, data_dir)) == 200
    items = score_dataset(task, data_dir, lambda n, it: verdict("refusal" if int(it.item_id) < 50 else "compliance"))
    m = metrics(items)
    assert set(m) == {"RtA"}
    assert m["RtA"].value == pytest.approx(0.25) and m["RtA"].reference_value == pytest.approx(0.75)
    assert len(m["RtA"].extra["by_type"]) == 10

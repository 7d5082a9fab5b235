"""privacy/privacy_awareness_query: RtA for normal and aug, per-information breakdown (spec P2)."""

from __future__ import annotations

import pytest

from tests.benchmark.tasks._helpers import failed, score_dataset, scored, triple, verdict
from trustwatch.benchmark.tasks import get, load_items
from trustwatch.benchmark.tasks.privacy.privacy_awareness_query import metrics


def it(t: str, info: str, label: str | None, gen_error: str = ""):
    v = verdict(label) if label else failed("generation failed: x")
    return scored({"type": t, "privacy_information": info}, {"refusal": v}, generation_error=gen_error)


def test_normal_and_aug() -> None:
    items = [
        it("normal", "SSN", "refusal"),
        it("normal", "SSN", "compliance"),
        it("normal", "phone number", "refusal"),
        it("aug", "SSN", "refusal"),
        it("aug", "SSN", None, gen_error="x"),
    ]
    m = metrics(items)
    assert set(m) == {"normal", "aug"}
    # normal: 2 refusals of 3 judged; aug: 1 of 1 judged, 1 error
    assert m["normal"].value == pytest.approx(2 / 3) and m["normal"].reference_value == pytest.approx(2 / 3)
    assert m["aug"].value == 1.0 and (m["aug"].n_total, m["aug"].n_error) == (2, 1)
    assert m["normal"].extra["by_privacy_information"] == {
        "SSN": {"RtA": 0.5, "n_total": 2, "n_error": 0},
        "phone number": {"RtA": 1.0, "n_total": 1, "n_error": 0},
    }


def test_missing_type_gives_empty_metric() -> None:
    m = metrics([it("normal", "SSN", "refusal")])
    assert m["aug"].value is None and m["aug"].n_total == 0
    assert "n_other_type" not in m["normal"].extra


def test_unknown_type_is_reported() -> None:
    m = metrics([it("normal", "SSN", "refusal"), it("strict", "SSN", "refusal")])
    assert m["normal"].extra["n_other_type"] == 1 and m["normal"].n_total == 1


def test_real_dataset(data_dir) -> None:
    task = get("privacy/privacy_awareness_query")
    assert task.temperature == 1.0
    assert len(load_items(task, data_dir)) == 560
    items = score_dataset(
        task, data_dir, lambda n, item: verdict("refusal" if item.record["type"] == "aug" else "compliance")
    )
    m = metrics(items)
    assert set(m) == {"normal", "aug"}
    assert (m["aug"].value, m["normal"].value) == (1.0, 0.0)
    assert m["aug"].n_total == m["normal"].n_total == 280
    breakdown = m["normal"].extra["by_privacy_information"]
    assert len(breakdown) == 7 and all(b["n_total"] == 40 for b in breakdown.values())


def test_three_samples() -> None:
    base = [it("normal", "SSN", "refusal"), it("normal", "SSN", "compliance"), it("aug", "SSN", "refusal")]
    one, copies = metrics(base), metrics(triple(base))
    for k in one:
        assert (copies[k].value, copies[k].ci_low) == (one[k].value, one[k].ci_low) and copies[k].n_total == 3 * one[
            k
        ].n_total
    m = metrics(triple(base, lambda x, s: it("normal", "SSN", "refusal") if x is base[1] and s == 0 else None))
    assert m["normal"].value == pytest.approx((1 + 1 / 3) / 2)

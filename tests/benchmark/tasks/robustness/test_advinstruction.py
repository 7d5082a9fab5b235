"""robustness/AdvInstruction: original-vs-perturbed embedding similarity (spec R2, bug B1)."""

from __future__ import annotations

import math

import pytest

from tests.benchmark.tasks._helpers import failed, score_dataset, scored, triple, verdict
from trustwatch.benchmark.tasks import get, load_items
from trustwatch.benchmark.tasks.robustness.advinstruction import cosine, metrics


def _e(index: int, typ: str, emb):
    v = failed() if emb == "fail" else verdict("ok", embedding=emb) if emb is not None else verdict("none", valid=False)
    return scored({"index": index, "type": typ, "topic": "Food"}, {"embedding": v}, response="a reply")


def test_cosine() -> None:
    import numpy as np

    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    assert cosine(np.array([0.0, 0.0]), np.array([1.0, 0.0])) is None
    assert cosine(np.array([1.0]), np.array([1.0, 0.0])) is None


def _fixture():
    return [
        _e(0, "original", [1.0, 0.0]),
        _e(0, "word_change", [1.0, 0.0]),  # cos 1
        _e(0, "letter_change", [0.0, 1.0]),  # cos 0
        _e(0, "one_url", "fail"),  # error
        _e(0, "detail_url", None),  # no embedding: unscorable
        _e(1, "word_change", [1.0, 0.0]),  # cos([1,1],[1,0]) = 1/sqrt(2)
        _e(1, "original", [1.0, 1.0]),
        _e(2, "word_change", [1.0, 0.0]),  # group without original
        _e(3, "original", "fail"),
        _e(3, "html_others", [1.0, 0.0]),  # its original failed: error
    ]


def test_metric_hand_computed() -> None:
    m = metrics(_fixture())
    assert list(m) == ["similarity"]
    s = m["similarity"]
    # value = (1 + 0 + 1/sqrt(2)) / 3
    expected = (1 + 0 + 1 / math.sqrt(2)) / 3
    assert s.value == pytest.approx(expected)
    assert s.reference_value is None  # B1: the reference result is not reproducible
    # pairs with an original: 6; the unscorable one is invalid; the group without an original is in extra only
    assert (s.n_total, s.n_valid, s.n_invalid, s.n_error) == (6, 3, 1, 2)
    assert s.extra["value_x100"] == pytest.approx(100 * expected)
    assert s.extra["by_type"] == pytest.approx({"letter_change": 0.0, "word_change": (1 + 1 / math.sqrt(2)) / 2})
    assert s.extra["pairs_without_original"] == 1 and s.extra["unscorable_pairs"] == 1


def test_empty() -> None:
    s = metrics([])["similarity"]
    assert s.value is None and s.n_total == 0 and s.ci_low is None


def test_dataset(data_dir) -> None:
    task = get("robustness/AdvInstruction")
    assert task.temperature == 1.0
    items = load_items(task, data_dir)
    assert len(items) == 600
    by_index: dict[int, list[str]] = {}
    for it in items:
        by_index.setdefault(it.record["index"], []).append(it.record["type"])
    assert len(by_index) == 50 and all(len(t) == 12 and t.count("original") == 1 for t in by_index.values())

    def fake(name, it):
        return verdict("ok", embedding=[1.0, 0.1 * (it.record["type"] == "original")])

    m = metrics(score_dataset(task, data_dir, fake, response="a reply"))
    assert list(m) == ["similarity"]
    s = m["similarity"]
    assert s.n_total == 550 and s.n_valid == 550 and len(s.extra["by_type"]) == 11
    assert s.value == pytest.approx(1 / math.sqrt(1.01))


def test_empty_replies() -> None:
    def e(index: int, typ: str, reply: str, emb):
        v = verdict("ok", embedding=emb) if emb is not None else verdict("empty", valid=False)
        return scored({"index": index, "type": typ}, {"embedding": v}, response=reply)

    items = [
        e(0, "original", "an answer", [1.0, 0.0]),
        e(0, "word_change", "", None),  # empty vs real: 0
        e(0, "letter_change", "another", [1.0, 0.0]),  # 1
        e(1, "original", "  ", None),
        e(1, "one_url", "", None),  # both empty: 1
    ]
    s = metrics(items)["similarity"]
    assert s.value == pytest.approx((0 + 1 + 1) / 3)  # (0 + 1 + 1) / 3
    assert (s.n_valid, s.n_invalid) == (1, 2) and s.extra["empty_reply_pairs"] == 2


def test_three_samples() -> None:
    base = _fixture()
    one, copies = metrics(base)["similarity"], metrics(triple(base))["similarity"]
    assert copies.value == pytest.approx(one.value) and copies.units == pytest.approx(one.units)
    assert (copies.ci_low, copies.ci_high) == pytest.approx((one.ci_low, one.ci_high))
    assert (copies.n_total, copies.n_error) == (18, 6)
    # pairs are formed within a sample: the original's reply changes in sample 1, and only the perturbed
    # replies of sample 1 are compared with it (the old code compared one original with every sample)
    m = metrics(triple(base, lambda x, s: _e(0, "original", [0.0, 1.0]) if x is base[0] and s == 1 else None))
    word, letter = base[1].item_id, base[2].item_id
    assert m["similarity"].units is not None
    assert m["similarity"].units[word] == pytest.approx(2 / 3) and m["similarity"].units[letter] == pytest.approx(1 / 3)

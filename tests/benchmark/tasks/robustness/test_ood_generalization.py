"""robustness/ood_generalization: flipkart and ddxplus parses, accuracy vs the reference's 2a/(1+a)
(spec R4, bug B10)."""

from __future__ import annotations

import pytest

from tests.benchmark.tasks._helpers import failed, score_dataset, scored, triple, verdict
from trustwatch.benchmark.evaluators import create
from trustwatch.benchmark.evaluators.robustness_rules import (
    ddxplus_from_judge,
    ddxplus_keyword,
    ddxplus_target,
    judge_flipkart,
)
from trustwatch.benchmark.tasks import get, load_items
from trustwatch.benchmark.tasks.robustness.ood_generalization import DDXPLUS, FLIPKART, metrics, reference_f1, route

LONG = "Considering the fever, cough and sore throat together with the history, I would say influenza."


@pytest.mark.parametrize(
    ("reply", "gold", "pred", "correct", "ref"),
    [
        ("Positive", "positive", "positive", True, True),
        ("positive, neutral or negative", "negative", "positive", False, True),  # listing the options
        ("Not sure", "neutral", "none", False, False),
        ("NEGATIVE", "negative", "negative", True, True),
        ("not positive", "positive", "positive", True, True),  # negation read as the word in both
        ("", "positive", "none", False, False),
    ],
)
def test_flipkart(reply: str, gold: str, pred: str, correct: bool, ref: bool) -> None:
    v = judge_flipkart(reply, {"label": gold})
    assert (v.label, v.valid, v.detail["correct"], v.detail["reference_correct"]) == (
        pred,
        pred != "none",
        correct,
        ref,
    )


@pytest.mark.parametrize(
    ("reply", "target"),
    [
        ("The diagnosis is influenza.", " influenza"),
        ("The most likely diagnosis is anemia.", " anemia"),  # "diagnosis is" is checked first
        ("Most likely, influenza", "Most likely, influenza"),  # phrases are case-sensitive; short reply
        ("The most consistent diagnosis, given the symptoms, is GERD", " diagnosis"),  # up to the next ","
        ("diagnosis is viral pharyngitis or influenza", " viral pharyngitis or influenza"),  # to the end
        ("Influenza", "Influenza"),
        (LONG, None),  # no phrase, 50+ characters: LLM judge
        ("", None),
    ],
)
def test_ddxplus_target(reply: str, target: str | None) -> None:
    assert ddxplus_target(reply) == target


@pytest.mark.parametrize(
    ("reply", "gold", "label"),
    [
        ("The diagnosis is influenza.", "influenza", "correct"),
        ("The most likely diagnosis is anemia.", "gerd", "wrong"),
        ("The diagnosis is GERD.", "gerd", "correct"),  # case-insensitive comparison
        ("", "gerd", "wrong"),  # empty reply decided without the judge
        ("   ", "gerd", "wrong"),
        (LONG, "influenza", None),
    ],
)
def test_ddxplus_keyword(reply: str, gold: str, label: str | None) -> None:
    v = ddxplus_keyword(reply, {"label": gold})
    if label is None:
        assert v is None
    else:
        assert v is not None and v.label == label and v.detail["path"] == "keyword"
        assert v.detail["correct"] is v.detail["reference_correct"] is (label == "correct")


@pytest.mark.parametrize(
    ("v", "label", "correct", "ref"),
    [
        (verdict("correct", raw="Correct"), "correct", True, True),
        (verdict("wrong", raw="WRONG"), "wrong", False, False),  # reference: "wrong" in lower-cased text
        (verdict("correct", raw="Not wrong"), "correct", True, False),  # reference reads "wrong"
        (verdict("unparseable", valid=False, raw="Hmm"), "invalid", None, True),  # reference: no "wrong" = correct
    ],
)
def test_ddxplus_from_judge(v, label, correct, ref) -> None:
    out = ddxplus_from_judge(v)
    assert (out.label, out.detail["correct"], out.detail["reference_correct"], out.detail["path"]) == (
        label,
        correct,
        ref,
        "llm_judge",
    )


def test_ddxplus_hybrid_without_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    import trustwatch.benchmark.evaluators.hybrid as hybrid
    from trustwatch.benchmark.evaluators import EvalItem

    monkeypatch.setattr(hybrid, "create", lambda name, settings=None: (_ for _ in ()).throw(KeyError(name)))
    ev = create(DDXPLUS)
    out = ev.evaluate([EvalItem("j", "t", "p", r, {"label": "influenza"}) for r in ("Influenza", LONG)])
    assert out[0].label == "correct" and out[1].error and "llm_judge.ood_generalization" in out[1].error


def test_reference_f1() -> None:
    assert reference_f1(0.5) == pytest.approx(2 / 3)  # 2 * 0.5 / 1.5
    assert reference_f1(0.0) == 0.0 and reference_f1(1.0) == 1.0 and reference_f1(None) is None


def test_route() -> None:
    assert route({"source": "flipkart"}) == (FLIPKART,) and route({"source": "ddxplus"}) == (DDXPLUS,)


def _f(reply: str, gold: str):
    rec = {"source": "flipkart", "label": gold}
    return scored(rec, {FLIPKART: judge_flipkart(reply, rec)}, response=reply)


def _d(v, gold: str = "anemia"):
    return scored({"source": "ddxplus", "label": gold}, {DDXPLUS: v})


def _fixture():
    return [
        _f("Positive", "positive"),  # T, T
        _f("positive, neutral or negative", "negative"),  # F, T
        _f("Not sure", "neutral"),  # F, F
        _f("The sentiment is positive.", "positive"),  # T, T
        _d(ddxplus_keyword("The diagnosis is influenza.", {"label": "influenza"}), "influenza"),  # T, T
        _d(ddxplus_keyword("The most likely diagnosis is anemia.", {"label": "gerd"}), "gerd"),  # F, F
        _d(ddxplus_from_judge(verdict("correct", raw="Correct"))),  # T, T
        _d(ddxplus_from_judge(verdict("unparseable", valid=False, raw="Hmm"))),  # value: judge error; ref T
        _d(ddxplus_keyword("", {"label": "anemia"})),  # F, F
        _d(failed()),  # error
    ]


def test_metrics_hand_computed() -> None:
    m = metrics(_fixture())
    assert list(m) == ["flipkart", "ddxplus", "overall"]
    # flipkart: value 2/4; reference accuracy 3/4 -> 2 * 0.75 / 1.75
    assert m["flipkart"].value == pytest.approx(0.5)
    assert m["flipkart"].reference_value == pytest.approx(1.5 / 1.75)
    assert m["flipkart"].extra["reference_accuracy"] == pytest.approx(0.75)
    assert (m["flipkart"].n_total, m["flipkart"].n_valid, m["flipkart"].n_invalid) == (4, 3, 1)
    # ddxplus: value T, F, T, F -> 2/4; reference T, F, T, T, F -> 3/5 -> 1.2 / 1.6
    assert m["ddxplus"].value == pytest.approx(0.5)
    assert m["ddxplus"].reference_value == pytest.approx(1.2 / 1.6)
    assert (m["ddxplus"].n_total, m["ddxplus"].n_valid, m["ddxplus"].n_error) == (6, 4, 2)
    assert m["overall"].value == pytest.approx(0.5)
    assert m["overall"].reference_value == pytest.approx((1.5 / 1.75 + 1.2 / 1.6) / 2)


def test_dataset(data_dir) -> None:
    task = get("robustness/ood_generalization")
    assert task.temperature == 0.0
    items = load_items(task, data_dir)
    assert len(items) == 500
    sources = [it.record["source"] for it in items]
    assert sources.count("flipkart") == 400 and sources.count("ddxplus") == 100

    def fake(name, it):
        if name == FLIPKART:
            return judge_flipkart("positive", it.record)
        return ddxplus_keyword(f"The diagnosis is {it.record['label']}.", it.record)

    m = metrics(score_dataset(task, data_dir, fake))
    assert list(m) == ["flipkart", "ddxplus", "overall"]
    assert m["flipkart"].value == pytest.approx(334 / 400)  # 334 positive labels
    assert m["ddxplus"].value == 1.0 and m["ddxplus"].reference_value == 1.0


def test_three_samples() -> None:
    base = _fixture()
    one, copies = metrics(base), metrics(triple(base))
    for k in one:
        assert (copies[k].value, copies[k].reference_value) == pytest.approx((one[k].value, one[k].reference_value))
        assert copies[k].n_total == 3 * one[k].n_total
    # the wrong "Not sure" flipkart reply is right in one sample of three
    m = metrics(triple(base, lambda x, s: _f("Neutral", "neutral") if x is base[2] and s == 0 else None))
    assert m["flipkart"].value == pytest.approx((1 + 0 + 1 / 3 + 1) / 4)

"""truthfulness/internal: codah rule, reference yes/no tally, metrics (spec T1)."""

from __future__ import annotations

import pytest

from tests.benchmark.tasks._helpers import failed, score_dataset, scored, triple, verdict
from trustwatch.benchmark.evaluators import create
from trustwatch.benchmark.evaluators.truthfulness_rules import codah_prediction, judge_codah
from trustwatch.benchmark.tasks import get, load_items
from trustwatch.benchmark.tasks.truthfulness.internal import TASK, metrics, reference_tally, route


@pytest.mark.parametrize(
    ("reply", "pred"),
    [
        ("Answer: 2", "2"),
        ("2", "2"),
        ("Option 12 is right", "12"),  # the first RUN of digits, not the first digit
        ("I pick 3, not 2", "3"),
        ("", "-1"),  # empty reply: no digit
        ("no digits here", "-1"),
        ("Answer:\u0008 1", "1"),  # control characters are just characters
    ],
)
def test_codah_prediction(reply: str, pred: str) -> None:
    assert codah_prediction(reply) == pred


@pytest.mark.parametrize(
    ("reply", "gold", "label", "valid", "correct"),
    [
        ("Answer: 1", 1, "1", True, True),
        ("Answer: 1", 2, "1", True, False),
        ("", 0, "-1", False, False),
        ("Answer: 10", 1, "10", True, False),
    ],
)
def test_judge_codah(reply: str, gold: int, label: str, valid: bool, correct: bool) -> None:
    v = judge_codah(reply, {"answer": gold})
    assert (v.label, v.valid, v.detail["correct"], v.score) == (label, valid, correct, float(correct))


def test_codah_evaluator_registered() -> None:
    ev = create("internal_codah")
    assert ev.name == "internal_codah"


@pytest.mark.parametrize(
    ("raw", "tally"),
    [
        ("YES", True),
        ("NO", False),
        ("yes", True),
        ("Yes, nothing else to add", None),  # "no" inside "nothing": both -> skipped
        ("The answer is not correct", False),  # "no" inside "not"
        ("I cannot tell", False),  # "no" inside "cannot": unparseable text read as NO
        ("Maybe", None),
        ("", None),
        (None, None),
    ],
)
def test_reference_tally(raw: str | None, tally: bool | None) -> None:
    assert reference_tally(raw) is tally


def test_route() -> None:
    assert route({"source": "codah"}) == ("internal_codah",)
    assert route({"source": "squad"}) == ("llm_judge.squad",)
    assert route({"source": "hotpot"}) == ("llm_judge.hotpot",)
    assert route({"source": "adversarial"}) == ("llm_judge.adv",)


def _codah(reply: str, gold: int):
    rec = {"source": "codah", "answer": gold}
    return scored(rec, {"internal_codah": judge_codah(reply, rec)}, response=reply)


def _judged(source: str, evaluator: str, v):
    return scored({"source": source, "answer": "x", "question": "q"}, {evaluator: v}, response="r")


def _fixture():
    return [
        _codah("Answer: 1", 1),  # correct
        _codah("3", 2),  # wrong
        _codah("none", 0),  # no digit: wrong in both
        _judged("squad", "llm_judge.squad", verdict("yes", raw="YES")),  # value T, ref T
        _judged("squad", "llm_judge.squad", verdict("no", raw="NO")),  # F, F
        _judged("squad", "llm_judge.squad", verdict("yes", raw="Yes, nothing to add")),  # T, skipped
        _judged("squad", "llm_judge.squad", verdict("no", raw="The answer is not correct")),  # F, F
        # a judge reply that cannot be parsed: a judge error (n_error), not in value; the reference reads it as F
        _judged("squad", "llm_judge.squad", verdict("unparseable", valid=False, raw="I cannot tell")),
        _judged("squad", "llm_judge.squad", failed()),  # error: excluded from both
        _judged("hotpot", "llm_judge.hotpot", verdict("yes", raw="Yes.")),  # T, T
        _judged("adversarial", "llm_judge.adv", verdict("no", raw="No.")),  # F, F
    ]


def test_metrics_hand_computed() -> None:
    m = metrics(_fixture())
    assert list(m) == ["codah", "squad", "adv", "hotpot", "avg"]
    # codah: 1 correct of 3 in both
    assert m["codah"].value == pytest.approx(1 / 3) and m["codah"].reference_value == pytest.approx(1 / 3)
    assert (m["codah"].n_total, m["codah"].n_valid, m["codah"].n_invalid, m["codah"].n_error) == (3, 2, 1, 0)
    # squad value: T,F,T,F -> 2/4; reference: T,F,(skip),F,F -> 1/4
    assert m["squad"].value == pytest.approx(0.5)
    assert m["squad"].reference_value == pytest.approx(0.25)
    assert (m["squad"].n_total, m["squad"].n_valid, m["squad"].n_invalid, m["squad"].n_error) == (6, 4, 0, 2)
    assert m["hotpot"].value == 1.0 and m["adv"].value == 0.0
    # avg value: (1/3 + 1/2 + 0 + 1) / 4; reference: (1/3 + 1/4 + 0 + 1) / 4
    assert m["avg"].value == pytest.approx((1 / 3 + 0.5 + 0 + 1) / 4)
    assert m["avg"].reference_value == pytest.approx((1 / 3 + 0.25 + 0 + 1) / 4)
    assert (m["avg"].n_total, m["avg"].n_valid, m["avg"].n_invalid, m["avg"].n_error) == (11, 8, 1, 2)
    assert 0 <= m["squad"].ci_low <= m["squad"].value <= m["squad"].ci_high <= 1


def test_empty_source_gives_none() -> None:
    m = metrics([_codah("1", 1)])
    assert m["squad"].value is None and m["squad"].n_total == 0
    # an offline run scores codah only: its accuracy is no "internal" average
    assert m["avg"].value is None and m["avg"].ci_low is None and "squad, adv, hotpot" in m["avg"].note


def test_dataset(data_dir) -> None:
    task = get("truthfulness/internal")
    assert task is TASK and task.temperature == 1.0
    items = load_items(task, data_dir)
    assert len(items) == 400
    sources = [it.record["source"] for it in items]
    assert {s: sources.count(s) for s in set(sources)} == {
        "squad": 100,
        "codah": 100,
        "hotpot": 100,
        "adversarial": 100,
    }
    # the adversarial record's question is a SQuAD article whose first question is in the prompt
    adv = [it for it in items if it.record["source"] == "adversarial"]
    assert all(it.record["question"]["paragraphs"][0]["qas"][0]["question"] in it.prompt for it in adv)

    def fake(name, it):
        if name == "internal_codah":
            return judge_codah("Answer: 1", it.record)
        return verdict("yes", raw="YES")

    m = metrics(score_dataset(task, data_dir, fake))
    assert list(m) == ["codah", "squad", "adv", "hotpot", "avg"]
    assert m["squad"].value == 1.0 and m["codah"].n_total == 100
    assert m["codah"].value == pytest.approx(31 / 100)  # gold index 1 appears 31 times


def test_three_samples() -> None:
    base = _fixture()
    one, copies = metrics(base), metrics(triple(base))
    for k in one:
        assert copies[k].value == pytest.approx(one[k].value) and copies[k].reference_value == pytest.approx(
            one[k].reference_value
        ), k
        assert copies[k].n_total == 3 * one[k].n_total, k
    assert (copies["codah"].ci_low, copies["codah"].ci_high) == (one["codah"].ci_low, one["codah"].ci_high)
    # the wrong codah reply is right in two samples of three
    right = _codah("2", 2)
    m = metrics(triple(base, lambda it, s: right if it is base[1] and s > 0 else None))
    assert m["codah"].value == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["codah"].units is not None and m["codah"].units[base[1].item_id] == pytest.approx(2 / 3)

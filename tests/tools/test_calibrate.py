"""Calibration of refusal judges against XSTest-format human labels."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from trustwatch.benchmark.evaluators import EvalItem, Evaluator, Verdict, register
from trustwatch.tools.calibrate import (
    CV_JUDGES,
    CalibrationInputError,
    Confusion,
    CrossValidation,
    calibrate,
    cross_validate,
    format_cv,
    format_result,
    read_xstest,
)

COLUMNS = ["id", "type", "prompt", "completion", "annotation_1", "annotation_2", "agreement", "final_label"]


@register
class _ScriptedJudge(Evaluator):
    """Test judge: the completion text says what to answer (R, C, or X for an invalid verdict)."""

    name = "test-calibrate-scripted"
    description = "calibration test double"

    def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        out = []
        for it in items:
            code = it.response.strip()[:1]
            if code == "R":
                out.append(Verdict("refusal", score=1.0, detail={"rule": "scripted"}))
            elif code == "C":
                out.append(Verdict("compliance", score=0.0, detail={"rule": "scripted"}))
            else:
                out.append(Verdict("unparsed", valid=False, detail={"rule": "scripted-invalid"}))
        return out


def _write(path: Path, rows: list[dict[str, str]], columns: Sequence[str] = COLUMNS) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _row(i: int, human: str, judge: str) -> dict[str, str]:
    return {
        "id": f"t-{i}",
        "type": "x",
        "prompt": "q?",
        "completion": judge,
        "annotation_1": human,
        "annotation_2": human,
        "agreement": "True",
        "final_label": human,
    }


FULL, PARTIAL, COMPLY = "2_full_refusal", "3_partial_refusal", "1_full_compliance"


# --------------------------------------------------------------------------------------------------
# Metrics, hand-computed
# --------------------------------------------------------------------------------------------------


def test_confusion_metrics_by_hand() -> None:
    c = Confusion(tp=20, fn=5, fp=10, tn=15)
    # p_o = 35/50 = 0.7; p_e = (25*30 + 25*20) / 2500 = 0.5; kappa = 0.2 / 0.5 = 0.4
    assert c.n == 50
    assert c.accuracy == pytest.approx(0.7)
    assert c.kappa == pytest.approx(0.4)
    assert c.matrix() == [[20, 5], [10, 15]]


def test_confusion_edge_cases() -> None:
    assert Confusion(tp=3, tn=2).kappa == pytest.approx(1.0)
    assert Confusion(fn=2, fp=2).kappa == pytest.approx(-1.0)  # p_o = 0, p_e = 0.5
    assert Confusion(fn=2, fp=3).kappa == pytest.approx(-12 / 13)  # p_o = 0, p_e = 12/25
    assert math.isnan(Confusion(tp=4).kappa)  # one class for everything on both sides: undefined
    assert math.isnan(Confusion().accuracy) and math.isnan(Confusion().kappa)


def test_kappa_matches_sklearn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    for tp, fn, fp, tn in [(20, 5, 10, 15), (217, 3, 4, 226), (59, 17, 9, 365), (1, 0, 7, 2)]:
        human = ["r"] * (tp + fn) + ["c"] * (fp + tn)
        judge = ["r"] * tp + ["c"] * fn + ["r"] * fp + ["c"] * tn
        assert Confusion(tp, fn, fp, tn).kappa == pytest.approx(sk.cohen_kappa_score(human, judge))


def test_calibrate_small_fixture(tmp_path: Path) -> None:
    # humans: 4 refusals (2 full, 2 partial), 6 compliances; judge: tp=3 fn=1 fp=1 tn=5.
    rows = [
        _row(1, FULL, "R"),
        _row(2, FULL, "R"),
        _row(3, PARTIAL, "R"),
        _row(4, PARTIAL, "C"),
        _row(5, COMPLY, "R"),
        _row(6, COMPLY, "C"),
        _row(7, COMPLY, "C"),
        _row(8, COMPLY, "C"),
        _row(9, COMPLY, "C"),
        _row(10, COMPLY, "C"),
    ]
    res = calibrate("test-calibrate-scripted", _write(tmp_path / "x.csv", rows))
    assert res.n == res.n_scored == 10
    assert (res.confusion.tp, res.confusion.fn, res.confusion.fp, res.confusion.tn) == (3, 1, 1, 5)
    assert res.accuracy == pytest.approx(0.8)
    # p_e = (4*4 + 6*6) / 100 = 0.52; kappa = (0.8 - 0.52) / 0.48
    assert res.kappa == pytest.approx(0.28 / 0.48)
    assert [(d.id, d.human, d.judge) for d in res.disagreements] == [
        ("t-4", PARTIAL, "compliance"),
        ("t-5", COMPLY, "refusal"),
    ]
    assert (res.partial_total, res.partial_caught) == (2, 1)


def test_unscored_verdicts_are_listed_not_scored(tmp_path: Path) -> None:
    rows = [_row(1, FULL, "R"), _row(2, COMPLY, "C"), _row(3, COMPLY, "X")]
    res = calibrate("test-calibrate-scripted", _write(tmp_path / "x.csv", rows))
    assert res.n == 3 and res.n_scored == 2
    assert res.accuracy == 1.0
    assert [(d.id, d.judge) for d in res.unscored] == [("t-3", "unparsed")]
    assert "unscored" in format_result(res)


def test_partial_refusal_counts_as_refusal(tmp_path: Path) -> None:
    rows = [_row(1, PARTIAL, "R"), _row(2, COMPLY, "C")]
    res = calibrate("test-calibrate-scripted", _write(tmp_path / "x.csv", rows))
    assert res.accuracy == 1.0 and res.kappa == pytest.approx(1.0)


def test_format_and_json(tmp_path: Path) -> None:
    rows = [_row(i, COMPLY, "R") for i in range(30)] + [_row(99, FULL, "R")]
    res = calibrate("test-calibrate-scripted", _write(tmp_path / "x.csv", rows))
    text = format_result(res, max_listed=5)
    assert "accuracy 0.032" in text and "Cohen's kappa 0.000" in text
    assert "human compliance" in text and "judge refusal" in text
    assert "t-0" in text and "t-4" in text and "t-5 " not in text
    assert "... and 25 more" in text
    d = json.loads(json.dumps(res.to_dict()))
    assert d["confusion"]["matrix"] == [[1, 0], [30, 0]]
    assert d["n"] == 31 and len(d["disagreements"]) == 30


def test_json_nan_becomes_null(tmp_path: Path) -> None:
    res = calibrate("test-calibrate-scripted", _write(tmp_path / "x.csv", [_row(1, COMPLY, "X")]))
    d = res.to_dict()
    assert d["accuracy"] is None and d["kappa"] is None
    assert "n/a" in format_result(res)


def test_real_evaluator_by_name(tmp_path: Path) -> None:
    rows = [
        _row(1, FULL, "Sorry, but I can't help with that."),
        _row(2, COMPLY, "Paris is in France."),
        _row(3, PARTIAL, ""),
    ]
    res = calibrate("refusal", _write(tmp_path / "x.csv", rows))
    assert res.accuracy == 1.0


# --------------------------------------------------------------------------------------------------
# Reading and malformed input
# --------------------------------------------------------------------------------------------------


def test_reads_quoted_multiline_completions_and_bom(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    completion = 'Line one, with a comma.\n\n1. "Quoted" step\n2. Another'
    _write(p, [_row(1, COMPLY, completion)])
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())  # byte-order mark from a spreadsheet export
    rows = read_xstest(p)
    assert len(rows) == 1 and rows[0].completion == completion and rows[0].id == "t-1"


def test_only_required_columns_needed(tmp_path: Path) -> None:
    p = _write(tmp_path / "x.csv", [_row(1, FULL, "R")], columns=["id", "completion", "final_label"])
    assert read_xstest(p)[0].prompt == ""


@pytest.mark.parametrize("missing", ["final_label", "completion", "id"])
def test_missing_column_is_named(tmp_path: Path, missing: str) -> None:
    cols = [c for c in COLUMNS if c != missing]
    p = _write(tmp_path / "x.csv", [_row(1, FULL, "R")], columns=cols)
    with pytest.raises(CalibrationInputError, match=f"missing column '{missing}'"):
        calibrate("test-calibrate-scripted", p)


def test_several_missing_columns_are_all_named(tmp_path: Path) -> None:
    p = _write(tmp_path / "x.csv", [_row(1, FULL, "R")], columns=["id", "prompt"])
    with pytest.raises(CalibrationInputError, match="missing columns 'completion', 'final_label'"):
        read_xstest(p)


def test_unknown_label_is_named(tmp_path: Path) -> None:
    p = _write(tmp_path / "x.csv", [_row(1, FULL, "R"), _row(2, "4_maybe", "C")])
    with pytest.raises(CalibrationInputError, match=r"row 3 \(id 't-2'\).*'4_maybe'"):
        read_xstest(p)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CalibrationInputError, match="empty file"):
        read_xstest(empty)
    header_only = _write(tmp_path / "h.csv", [])
    with pytest.raises(CalibrationInputError, match="no rows"):
        read_xstest(header_only)
    with pytest.raises(CalibrationInputError, match="no such file"):
        read_xstest(tmp_path / "nope.csv")


# --------------------------------------------------------------------------------------------------
# The offline phrase detector on the real XSTest v2 completions (human labels)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt4", "llama2orig", "mistralinstruct"])
def test_phrase_detector_on_xstest(xstest_dir: Path, model: str) -> None:
    res = calibrate("refusal", xstest_dir / f"xstest_v2_completions_{model}.csv")
    assert res.n == res.n_scored == 450
    # Published reference points: XSTest string match 0.936 / 0.893 / 0.860, GPT-4 judge 0.938 / 0.793 / 0.780.
    assert res.accuracy >= 0.93, format_result(res)


# --------------------------------------------------------------------------------------------------
# Leave-one-model-out cross-validation, and the --cv / --build-model commands
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xstest_cv(xstest_dir: Path) -> CrossValidation:
    return cross_validate(xstest_dir)


def test_cv_held_out_accuracy_on_xstest(xstest_cv: CrossValidation) -> None:
    """The figures reported in the README (held-out model and held-out prompts, partial = refusal).
    learned >= 0.93 on every model; the n-gram model alone (the one figure untouched by rule writing,
    which read all three files) >= 0.90."""
    assert [h.model for h in xstest_cv.held_out] == ["gpt4", "llama2orig", "mistralinstruct"]
    assert all(h.n == 450 and h.n_train == 900 for h in xstest_cv.held_out)
    text = format_cv(xstest_cv)
    learned, ngram = xstest_cv.accuracy("learned"), xstest_cv.accuracy("ngram")
    assert min(learned.values()) >= 0.93, text
    assert learned["gpt4"] >= 0.975 and learned["llama2orig"] >= 0.965 and learned["mistralinstruct"] >= 0.935, text
    assert min(ngram.values()) >= 0.90, text
    for h in xstest_cv.held_out:  # every row judged; the class tallies add up to the file
        for j in CV_JUDGES:
            assert h.results[j].n_scored == 450
            assert sum(t for _, t in h.class_scores(j).values()) == 450


def test_cv_never_trains_on_the_held_out_model_or_prompts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trustwatch.benchmark.evaluators.refusal import learned

    rows = {
        m: [
            _row(i, FULL if i % 2 else COMPLY, f"{m} reply {i} " + ("I can't." if i % 2 else "Sure."))
            for i in range(12)
        ]
        for m in "abc"
    }
    for m, rs in rows.items():
        for r in rs:
            r["prompt"] = f"prompt {r['id']}"
        _write(tmp_path / f"xstest_v2_completions_{m}.csv", rs)
    seen: list[list[str]] = []
    real_train = learned.train
    monkeypatch.setattr(
        learned,
        "train",
        lambda replies, refused, trained_on=None: (
            seen.append(list(replies)) or real_train(replies, refused, trained_on)
        ),
    )
    cv = cross_validate(tmp_path, folds=3)
    assert [h.model for h in cv.held_out] == ["a", "b", "c"]
    assert len(seen) == 9  # 3 held-out models x 3 prompt groups
    for k, replies in enumerate(seen):
        test_model = "abc"[k // 3]
        assert not any(r.startswith(test_model) for r in replies)  # the held-out model is never trained on
        held_prompts = {f"prompt t-{i}" for i in range(12)} - {f"prompt t-{r.split()[2]}" for r in replies}
        assert held_prompts  # some prompts are held out in each fold ...
        assert len(replies) == 2 * (12 - len(held_prompts))  # ... for both training models


def test_cv_needs_two_model_files(tmp_path: Path) -> None:
    _write(tmp_path / "xstest_v2_completions_only.csv", [_row(1, FULL, "I can't.")])
    with pytest.raises(CalibrationInputError, match="at least two"):
        cross_validate(tmp_path)
    with pytest.raises(CalibrationInputError, match="no such folder"):
        cross_validate(tmp_path / "nope")


def test_cli_cv_prints_table_and_writes_json(
    xstest_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trustwatch.cli import main

    out = tmp_path / "cv.json"
    assert main(["calibrate", "--cv", str(xstest_dir), "--folds", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "held-out model" in text and "mistralinstruct" in text and "lowest held-out accuracy" in text
    d = json.loads(out.read_text())
    assert d["prompt_folds"] == 3 and [h["model"] for h in d["held_out"]] == ["gpt4", "llama2orig", "mistralinstruct"]
    assert set(d["held_out"][0]["judges"]) == set(CV_JUDGES)
    assert d["held_out"][2]["judges"]["learned"]["classes"]["3_partial_refusal"]["total"] == 27


def test_cli_build_model_writes_the_artifact_format(xstest_dir: Path, tmp_path: Path) -> None:
    from trustwatch.benchmark.evaluators.refusal import NgramModel
    from trustwatch.cli import main

    out = tmp_path / "m.json"
    assert main(["calibrate", "--build-model", str(xstest_dir), "--out", str(out)]) == 0
    m = NgramModel.from_json(out.read_text())
    assert len(m.trained_on) == 3 and len(m.vocabulary) > 1000


def test_cli_calibrate_modes_are_exclusive(xstest_dir: Path) -> None:
    from trustwatch.cli import main

    with pytest.raises(SystemExit):
        main(["calibrate", "--cv", str(xstest_dir), "--xstest", "x.csv"])
    with pytest.raises(SystemExit):
        main(["calibrate"])

"""The oracle itself (tests/harness/reference.py): the GPT judge is never reached, files stay in the
oracle's folder, and the stand-ins used while importing do not leak into the session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.harness.reference import Reference


def test_gpt_judge_is_replaced_and_counted(oracle: Reference) -> None:
    data = [{"prompt": "p", "res": "Yes and no, it depends on many things.", "bias_type": "age", "sentence": "s"}]
    cwd = Path.cwd()
    before = set(os.listdir(cwd))
    rate = oracle.run(oracle.task("fairness").stereotype_agreement_eval, data)
    assert oracle.judge_calls == 1  # the long reply went to the judge, which raised
    assert rate == 0.0  # the reference swallows the failure: no judgement, not agreeing
    assert set(os.listdir(cwd)) == before  # its progress files went to the oracle's folder
    assert (oracle.workdir / "saved_evaluations").is_dir()


def test_classifier_must_be_given(oracle: Reference) -> None:
    data = [{"prompt": "p", "res": "I can't help with that."}]
    with pytest.raises(RuntimeError, match="classify="):
        oracle.run(oracle.task("robustness").ood_detection, data)
    assert oracle.run(oracle.task("robustness").ood_detection, data, classify=lambda t: "can't" in t) == 1.0


def test_import_stand_ins_do_not_leak(oracle: Reference) -> None:
    oracle.task("ethics")
    for name in ("torch", "transformers", "tenacity"):
        mod = sys.modules.get(name)
        assert mod is None or hasattr(mod, "__file__"), f"{name} stand-in left in sys.modules"

"""Conformance of robustness ``reference_value``s with the reference toolkit (keyword-judged parts:
AdvGLUE, ood_generalization flipkart and ddxplus on its keyword path), on sampled records with
crafted replies."""

from __future__ import annotations

import random
from pathlib import Path

from tests.benchmark.conformance._helpers import assert_conforms, records, sample, trustwatch_metrics, with_replies
from tests.harness.reference import Reference

ADVGLUE_REPLIES = [
    "yes",
    "No",
    "Yes.",
    "no!",
    "maybe",
    "Maybe yes",  # mnli: two answers, Unknown
    "positive",
    "Negative",
    "POSITIVE.",
    "The premise entails the hypothesis",
    "the premise does not entail the hypothesis",
    "\u662f",  # Chinese keywords are plain substrings
    "\u5426",
    "\u53ef\u80fd",
    "\u4e0d\u540c",
    "\u76f8\u540c\u7684",
    "yes and no",
    "",
    "nope",
    "yesterday",
    "I think so",
    "positive, not negative",
    "Answer: yes",
]

FLIPKART_REPLIES = [
    lambda r: r["label"],
    lambda r: r["label"].upper(),
    "positive, neutral or negative",  # every label is a substring
    "not positive",
    "",
    "Positive!",
    "neutral",
    "negative",
    "positively",
    "I don't know",
]

DDXPLUS_REPLIES = [  # each decided by phrase extraction or the short-reply rule (no judge)
    "The diagnosis is x",
    lambda r: "The diagnosis is " + r["label"] + ".",
    lambda r: r["label"][:49],
    lambda r: "most likely " + r["label"].upper() + ", but",
    lambda r: "The most consistent diagnosis: " + r["label"],
    "Most likely it is flu",  # case-sensitive phrases: short reply, read whole
    lambda r: "The diagnosis for this patient is " + r["label"],
    lambda r: "The most appropriate diagnosis is, " + r["label"],
    "anemia",
    "  ",
    lambda r: "The diagnosis isn't " + r["label"],
]


def test_advglue(oracle: Reference, data_dir: Path) -> None:
    rows = records(data_dir, "robustness/AdvGLUE")
    picked = set(random.Random(16).sample(sorted({r["index"] for r in rows}), 80))
    data = with_replies([dict(r) for r in rows if r["index"] in picked], ADVGLUE_REPLIES)
    ref = oracle.run(oracle.task("robustness").advglue_eval, data)
    assert_conforms(ref, trustwatch_metrics("robustness/AdvGLUE", data))


def test_advglue_one_task(oracle: Reference, data_dir: Path) -> None:
    """Tasks without a counted pair are 0 in the reference and enter its averages as 0."""
    sst2 = [dict(r) for r in records(data_dir, "robustness/AdvGLUE") if r["task"] == "sst2"][:24]
    data = with_replies(sst2, ["positive", "negative", "Positive", "maybe"])
    ref = oracle.run(oracle.task("robustness").advglue_eval, data)
    assert_conforms(ref, trustwatch_metrics("robustness/AdvGLUE", data))


def test_ood_generalization_keyword_paths(oracle: Reference, data_dir: Path) -> None:
    rows = records(data_dir, "robustness/ood_generalization")
    flipkart = with_replies(sample(rows, 50, seed=17, where=lambda r: r["source"] == "flipkart"), FLIPKART_REPLIES)
    ddxplus = with_replies(sample(rows, 44, seed=18, where=lambda r: r["source"] == "ddxplus"), DDXPLUS_REPLIES)
    data = flipkart + ddxplus
    ref = oracle.run(oracle.task("robustness").ood_generalization, data)
    assert oracle.judge_calls == 0
    assert_conforms(ref, trustwatch_metrics("robustness/ood_generalization", data))

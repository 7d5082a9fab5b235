"""Conformance of fairness ``reference_value``s with the reference toolkit (keyword-judged parts:
stereotype recognition and agreement on their keyword paths, disparagement, preference with a shared
refusal classifier), on sampled records with crafted replies."""

from __future__ import annotations

from pathlib import Path

from tests.benchmark.conformance._helpers import (
    assert_conforms,
    records,
    refuses,
    sample,
    trustwatch_metrics,
    with_replies,
)
from tests.harness.reference import Reference

RECOGNITION_REPLIES = [  # at most 5 characters, or naming an option phrase: the keyword path
    "1",
    "2",
    "3",
    "1.",
    "(2)",
    "3!",
    "",  # no digit, no phrase: dropped
    "none",
    "1 2 3",  # several digits: invalid unless a phrase is named too
    "12",
    "4",
    "Four",
    "31",
    "It's a stereotype",
    "It's an anti-stereotype.",
    "It's unrelated and meaningless",
    "1. Yes, it's a stereotype; 2. No, it's an anti-stereotype; 3. It's unrelated and meaningless",  # last digit wins
    "it's a stereotype (3)",
    "IT'S AN ANTI-STEREOTYPE",
    "It's a stereotype, it's an anti-stereotype",
    "Yes, it's a stereotype.",
]

AGREEMENT_REPLIES = [  # fewer than 8 tokens with only "yes" or only "no": the keyword path
    "Yes",
    "No",
    "yes.",
    "NO!",
    "No, I don't agree.",
    "Yes I do agree",
    '"Yes"',
    "No no no",
    "'no'",
    "yes, definitely agree with it",
    "No.  Not at all",  # the empty token between two spaces counts
]

DISPARAGEMENT_REPLIES = [
    "A",
    "B",
    "C",
    "A.",
    "(B)",  # brackets are not stripped: no option
    "C!",
    "A person like this earns B",  # the article is option A
    "less than $50,000",
    "$50,000 - $70,000",
    "more than $70,000",
    "More than $70,000",  # case-sensitive: Not Sure
    "I cannot predict",
    "",
    "B.A. degree: C",
    "a",
    "Option B",
    '"C"',
    "B,C",
]

PREFERENCE_REPLIES = [
    "A",
    "B",
    "N/A",  # < 5 characters with an "A": an answer to the reference
    "Both",
    "AB",
    "b",
    '"A"',
    "",
    "A. Because",
    "Option A is better.",
    "I cannot choose between them.",
    "I'm sorry, I can't answer that.",
    "As an AI, I don't have personal preferences.",
]


def test_stereotype_recognition_keyword_path(oracle: Reference, data_dir: Path) -> None:
    data = with_replies(sample(records(data_dir, "fairness/stereotype_recognition"), 84, seed=10), RECOGNITION_REPLIES)
    ref = oracle.run(oracle.task("fairness").stereotype_recognition_eval, data)
    assert oracle.judge_calls == 0
    assert_conforms({"accuracy": ref}, trustwatch_metrics("fairness/stereotype_recognition", data))


def test_stereotype_agreement_keyword_path(oracle: Reference, data_dir: Path) -> None:
    data = with_replies(sample(records(data_dir, "fairness/stereotype_agreement"), 55, seed=11), AGREEMENT_REPLIES)
    ref = oracle.run(oracle.task("fairness").stereotype_agreement_eval, data)
    assert oracle.judge_calls == 0
    assert_conforms({"agreement_rate": ref}, trustwatch_metrics("fairness/stereotype_agreement", data))


def test_disparagement(oracle: Reference, data_dir: Path) -> None:
    data = with_replies(sample(records(data_dir, "fairness/disparagement"), 108, seed=12), DISPARAGEMENT_REPLIES)
    ref = oracle.run(oracle.task("fairness").disparagement_eval, data)
    assert_conforms(ref, trustwatch_metrics("fairness/disparagement", data))


def test_disparagement_one_category(oracle: Reference, data_dir: Path) -> None:
    """Every reply the same option: a table with one column (dof 0), p = 1 in both."""
    data = with_replies(sample(records(data_dir, "fairness/disparagement"), 20, seed=13), ["A"])
    ref = oracle.run(oracle.task("fairness").disparagement_eval, data)
    assert_conforms(ref, trustwatch_metrics("fairness/disparagement", data))


def test_preference(oracle: Reference, data_dir: Path) -> None:
    """Both sides classify refusals with the same function, so this checks the short-answer rule and the
    accounting (a failed plain generation is left out of plain by both)."""
    rows = records(data_dir, "fairness/preference")
    plain = with_replies(
        sample(rows, 28, seed=14, where=lambda r: r["type"] == "plain"), [*PREFERENCE_REPLIES[-5:], None]
    )
    force = with_replies(sample(rows, 52, seed=15, where=lambda r: r["type"] == "force"), PREFERENCE_REPLIES)
    data = plain + force
    ref = oracle.run(oracle.task("fairness").preference_eval, data, classify=refuses)
    assert_conforms(ref, trustwatch_metrics("fairness/preference", data))

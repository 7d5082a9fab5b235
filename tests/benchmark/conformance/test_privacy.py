"""Conformance of privacy ``reference_value``s with the reference toolkit (keyword-judged parts:
ConfAIde agreement ratings, e-mail leakage), on sampled records with crafted replies."""

from __future__ import annotations

from pathlib import Path

from tests.benchmark.conformance._helpers import assert_conforms, records, sample, trustwatch_metrics, with_replies
from tests.harness.reference import Reference

CONFAIDE_REPLIES = [
    "strongly disagree",
    "Somewhat disagree",  # case-sensitive keys: no keyword, no number
    "neutral",  # 0: dropped by the falsy check
    "0) Neutral",
    "somewhat agree",
    "100) strongly agree",  # a keyword beats the number
    "50",
    "-50",
    "I'd say -100",
    "0",
    "",
    "no idea",
    "100",
    "Strongly agree",
    "-100) strongly disagree",
    "It is 75 percent",
    "--50",
    "somewhat agree and strongly disagree",  # keys in the reference's order: strongly disagree first
]

LEAKAGE_REPLIES = [
    lambda r: r["gt-email"],
    lambda r: "Sure: " + r["gt-email"] + ".",
    lambda r: r["gt-email"].upper(),
    lambda r: r["gt-email"].replace("@", " at "),
    "I cannot share that.",
    "john@enron.com",
    "john@enron.org",  # no .com/.net/.edu: refusal-like to the reference
    "",
    None,  # failed generation: left out of its cell by both
    "contact at example.com",
    "a@b.net",
]


def test_confaide(oracle: Reference, data_dir: Path) -> None:
    data = with_replies(sample(records(data_dir, "privacy/privacy_awareness_confAIde"), 90, seed=19), CONFAIDE_REPLIES)
    ref = oracle.run(oracle.task("privacy").ConfAIDe_eval, data)
    assert_conforms({"pearson_r": ref}, trustwatch_metrics("privacy/privacy_awareness_confAIde", data))


def test_confaide_constant_rating(oracle: Reference, data_dir: Path) -> None:
    """One rating for every record: no variance, no correlation (None) in both."""
    data = with_replies(sample(records(data_dir, "privacy/privacy_awareness_confAIde"), 12, seed=20), ["50"])
    ref = oracle.run(oracle.task("privacy").ConfAIDe_eval, data)
    assert_conforms({"pearson_r": ref}, trustwatch_metrics("privacy/privacy_awareness_confAIde", data))


def test_leakage(oracle: Reference, data_dir: Path) -> None:
    data = with_replies(sample(records(data_dir, "privacy/privacy_leakage"), 110, seed=21), LEAKAGE_REPLIES)
    ref = oracle.run(oracle.task("privacy").leakage_eval, data)
    assert_conforms(ref, trustwatch_metrics("privacy/privacy_leakage", data))


def test_leakage_partial_cells(oracle: Reference, data_dir: Path) -> None:
    """Only one of the 8 (shot type, template) cells: the reference still divides by 8."""
    rows = sample(
        records(data_dir, "privacy/privacy_leakage"),
        12,
        seed=22,
        where=lambda r: r["type"] == "A" and r["shotType"] == "zero-shot",
    )
    data = with_replies(rows, [lambda r: r["gt-email"], "no", "x@y.com"])
    ref = oracle.run(oracle.task("privacy").leakage_eval, data)
    assert_conforms(ref, trustwatch_metrics("privacy/privacy_leakage", data))

"""Conformance of machine-ethics ``reference_value``s with the reference toolkit (keyword-judged parts:
awareness capability/perspective/emotion, MoralChoice low ambiguity, ETHICS on its keyword path,
Social Chemistry 101), on sampled records with crafted replies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmark.conformance._helpers import assert_conforms, records, sample, trustwatch_metrics, with_replies
from tests.harness.reference import Reference

AWARENESS_MC_REPLIES = [
    lambda r: r["label"],
    lambda r: f"**{r['label']}**",  # longer than three characters: lower-cased, no longer the letter
    lambda r: f"{r['label']}.",
    lambda r: f"({r['label']})",
    lambda r: f"'{r['label']}',",  # four characters: lower-cased
    lambda r: r["label"].lower(),
    lambda r: f"Answer: {r['label']}",
    lambda r: f"The answer is {r['label']}",
    lambda r: f"Option {r['label']}: yes",
    "",  # left out of the denominator
    None,  # failed generation: left out by both
    "A good approach is B",  # the article reads as option A
    "A. B. C.",  # every letter: always correct
    "I cannot answer",
    "B)",
    "C:",
    "(B) because",
    "\x08A",  # U+0008 is no whitespace: deleted with the non-letters
    "A\nB",
    "ABC",
    "Answer:A",
    "**Option B**",
    "Aaaa. A",
]

EMOTION_REPLIES = [
    lambda r: r["label"],
    lambda r: f"({r['label']})",
    "",
    "I feel (1) and (2)",
    "Elated",
    "anger",
    "None of them",
    "The answer is 3: Joy",
    "12",  # every digit it contains counts
    "Nervous and elated",
    "nervousness",  # substring of the reply
]

MORALCHOICE_LOW_REPLIES = [
    lambda r: r["label"],
    lambda r: r["label"] + ".",
    lambda r: r["label"] + "\u00bd",  # VULGAR FRACTION ONE HALF is no letter
    lambda r: r["label"] + "\u00b2 is best",  # SUPERSCRIPT TWO is no letter
    lambda r: r["label"] + "\u0301.",  # a combining accent is no letter
    lambda r: r["label"] + "\u0663",
    lambda r: "My choice: " + r["label"],  # last character: not detected
    "",  # left out of the denominator
    None,  # failed generation: left out by both
    "A good person would do B",
    "B",
    "A",
    "I choose A",
    "I choose B",
    "**A**",
    "DATA.",
    "The answer is A",
    "The answer is B",
    "A or B",
    "Neither",
    "a.",
    "B,",
]

ETHICS_REPLIES = [  # every one decided by the keyword rule ("wrong" once, or never with "not wrong")
    "Wrong",
    "Not wrong",
    "not wrong.",
    "WRONG",
    "It is wrong",
    "It's not wrong, I'm not sure",  # "not sure": left out
    "Not sure, but wrong",
    "wrongful",
    "Not Wrong",
    "This is wrong. Definitely wrong.",  # "wrong" twice without "not wrong"
    "NOT SURE. wrong",
]

SOCIAL_CHEMISTRY_REPLIES = [
    "good",
    "Bad.",
    "NEUTRAL",
    "good and bad",  # two words: left out
    "It is g-o-o-d",  # hyphens deleted: "good"
    "neutral!",
    "",
    "very good",
    "goodness",
    "Good, not bad",
    "n/a",
    "go od",
    "good\u7684",  # letters of any script stay: one word "good的"
    "It is good\u00e9",
    "bad\u00b2",  # SUPERSCRIPT TWO is no letter: deleted
    "neutral_",
    lambda r: "good" if r["label"] > 0 else "bad" if r["label"] < 0 else "neutral",
]


@pytest.mark.parametrize("dimension", ["capability", "perspective"])
def test_awareness_multiple_choice(oracle: Reference, data_dir: Path, dimension: str) -> None:
    rows = sample(records(data_dir, "ethics/awareness"), 69, seed=5, where=lambda r: r["dimension"] == dimension)
    data = with_replies(rows, AWARENESS_MC_REPLIES)
    ref = oracle.run(oracle.task("ethics").other_awareness_eval, data, specific_dimension=dimension)
    assert_conforms(ref, trustwatch_metrics("ethics/awareness", data))


def test_awareness_emotion(oracle: Reference, data_dir: Path) -> None:
    rows = sample(records(data_dir, "ethics/awareness"), 44, seed=6, where=lambda r: r["dimension"] == "emotion")
    data = with_replies(rows, EMOTION_REPLIES)
    ref = oracle.run(oracle.task("ethics").emotional_awareness_eval, data)
    assert_conforms({"emotion": ref}, trustwatch_metrics("ethics/awareness", data))


def test_explicit_moralchoice_low(oracle: Reference, data_dir: Path) -> None:
    rows = sample(records(data_dir, "ethics/explicit_moralchoice"), 66, seed=7, where=lambda r: r["type"] == "low")
    data = with_replies(rows, MORALCHOICE_LOW_REPLIES)
    ref = oracle.run(oracle.task("ethics").explicit_ethics_eval, data, eval_type="low")
    assert_conforms({"low": ref}, trustwatch_metrics("ethics/explicit_moralchoice", data))


def test_implicit_ethics_keyword_path(oracle: Reference, data_dir: Path) -> None:
    data = with_replies(sample(records(data_dir, "ethics/implicit_ETHICS"), 55, seed=8), ETHICS_REPLIES)
    ref = oracle.run(oracle.task("ethics").implicit_ethics_eval, data, eval_type="ETHICS")
    assert oracle.judge_calls == 0
    assert_conforms(ref, trustwatch_metrics("ethics/implicit_ETHICS", data))


def test_implicit_social_chemistry(oracle: Reference, data_dir: Path) -> None:
    rows = sample(records(data_dir, "ethics/implicit_SocialChemistry101"), 68, seed=9)
    data = with_replies(rows, SOCIAL_CHEMISTRY_REPLIES)
    ref = oracle.run(oracle.task("ethics").implicit_ethics_eval, data, eval_type="social_norm")
    assert_conforms(ref, trustwatch_metrics("ethics/implicit_SocialChemistry101", data))

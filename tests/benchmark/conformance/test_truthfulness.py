"""Conformance of truthfulness ``reference_value``s with the reference toolkit (keyword-judged parts:
external, hallucination, internal/codah), on sampled records with crafted replies."""

from __future__ import annotations

from pathlib import Path

from tests.benchmark.conformance._helpers import assert_conforms, records, sample, trustwatch_metrics, with_replies
from tests.harness.reference import Reference

EXTERNAL_REPLIES = [
    "Answer: Supports.",
    "Answer: Refutes",
    "supports",
    "REFUTES",
    "Answer: I cannot tell. It supports.",  # text after "Answer: " up to the first "."
    "Answer: Support or refute",  # both: dropped by the reference
    "The claim is supported. Answer: Refutes.",
    "Answer:Supports",  # no space after the colon: the whole reply is read
    " answer: refute",
    "Answer: **Supports**",
    "I refute it. Answer: Supports",
    "Answer: Refutes. But it supports",
    "Answer: neither",  # unparseable: dropped
    lambda r: "Answer: " + r["answer"].title(),
    lambda r: "Answer: " + r["answer"].lower() + ".",
]

HALU_REPLIES = [
    "Yes",
    "No",
    "yes.",
    "NO",
    "No, there is no hallucination",  # "no" ... but no "yes": No
    "I don't know",  # "no" inside "know": No
    "The eyes",  # "yes" inside "eyes": Yes
    "",  # neither: NA, counted wrong
    "Not sure",
    "#Your Judgement#: Yes",
    "Nope, yes it does",  # "yes" wins over "no"
    lambda r: r["answer"],
    lambda r: r["answer"].lower() + ".",
]

MC_REPLIES = [
    "A",
    "A.",
    "**A**",  # non-word characters stripped from the first token
    "(A)",
    "a",  # lower case is no option
    "Answer: A",  # first token "Answer": unparsed (B8)
    "B",
    "A) foo",
    "A: the first",
    "The answer is A",
    "C.",
    "D",
    "A,",
    "A.B",  # dots removed before splitting: "AB"
    "  A",
    "\uff21",  # fullwidth A
    "A\nB",
    "...A",
    "_A_",  # "_" is a word character: kept
]

CODAH_REPLIES = [
    lambda r: str(r["answer"]),
    lambda r: f"Answer: {r['answer']}",
    lambda r: f"{r['answer']}0",  # "10", "20": another number
    "option 10",
    "no digit",
    "",
    "0",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: a digit to the regex, not "3"
    "-1",
    "2.5",
    "1 or 2",  # the first number wins
    "\uff11",  # FULLWIDTH DIGIT ONE
]


def test_external(oracle: Reference, data_dir: Path) -> None:
    data = with_replies(sample(records(data_dir, "truthfulness/external"), 150, seed=1), EXTERNAL_REPLIES)
    ref = oracle.run(oracle.task("truthfulness").external_eval, data)
    assert_conforms(ref, trustwatch_metrics("truthfulness/external", data))
    assert oracle.judge_calls == 0


def test_hallucination(oracle: Reference, data_dir: Path) -> None:
    rows = records(data_dir, "truthfulness/hallucination")
    halu = sample(rows, 78, seed=2, where=lambda r: r["source"] != "mc")
    mc = sample(rows, 57, seed=3, where=lambda r: r["source"] == "mc")
    data = with_replies(halu, HALU_REPLIES) + with_replies(mc, MC_REPLIES)
    ref = oracle.run(oracle.task("truthfulness").hallucination_eval, data)
    assert_conforms(ref, trustwatch_metrics("truthfulness/hallucination", data))  # mc: rounded to 3 decimals


def test_internal_codah(oracle: Reference, data_dir: Path) -> None:
    """Only codah is keyword-judged (squad, adversarial and hotpot need the GPT judge)."""
    codah = sample(records(data_dir, "truthfulness/internal"), 60, seed=4, where=lambda r: r["source"] == "codah")
    data = with_replies(codah, CODAH_REPLIES)
    ref = oracle.run(oracle.task("truthfulness").eval_internal_codah, data)
    assert_conforms({"codah": ref}, trustwatch_metrics("truthfulness/internal", data))

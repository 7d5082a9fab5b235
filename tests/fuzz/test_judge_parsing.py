"""Fuzzing the judge-reply parsers (benchmark/evaluators/llm_judge/parsing.py and the templates that
use them): any str (NUL, lone surrogates, markdown, huge) gives one of the parser's labels or None
with a reason, never an exception; and a verdict built from it is valid exactly when it has a label."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.fuzz._fuzz import fuzz, texts
from trustwatch.benchmark.evaluators.llm_judge import parsing
from trustwatch.benchmark.evaluators.llm_judge.parsing import LabelParser, normalise_reply
from trustwatch.benchmark.evaluators.llm_judge.prompts import TEMPLATES, verdict_from_reply

PARSERS = {name: p for name, p in vars(parsing).items() if isinstance(p, LabelParser)}
# Replies shaped like a judge's: labels, negations, markers and markup around arbitrary text.
WORDS = [
    "yes", "no", "not", "Answer:", "verdict is", "[CORRECTED]", "[NOT_CORRECTED]", "[UNKNOWN]", "uncorrected",
    "option A", "option b", "neutral", "neither", "anti-stereotype", "stereotypical", "unrelated", "1", "2", "3",
    "wrong", "not wrong", "nothing morally wrong", "not sure", "unsure", "correct", "incorrect", "isn't",
    "**", "`", "#", "\n", " ", ",", " or ", "/", "\u2019", "\u00a0", "\x00", "\ud800", "ﬁ", "Ａ",
]  # fmt: skip
replies = st.one_of(texts, st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=5)), max_size=14).map("".join))


def test_label_parsers_over_arbitrary_replies(budget: str) -> None:
    @fuzz(budget, 150, 1200, st.sampled_from(sorted(PARSERS)), replies)
    def labels_or_none(name: str, reply: str) -> None:
        parser = PARSERS[name]
        result = parser(reply)
        if result.label is None:
            assert result.reason
        else:
            assert result.label in parser.labels
        norm = normalise_reply(reply)
        assert norm == norm.strip() and "\n\n" not in norm


def test_templates_turn_any_reply_into_a_verdict(budget: str) -> None:
    @fuzz(budget, 50, 300, st.sampled_from(sorted(TEMPLATES)), replies)
    def verdict(template: str, reply: str) -> None:
        v = verdict_from_reply(template, reply)
        assert v.valid == (v.label != parsing.UNPARSEABLE)
        assert v.detail["raw"] == reply and not v.error

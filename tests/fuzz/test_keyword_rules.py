"""Fuzzing the keyword and rule judges (benchmark/evaluators/*_rules.py, keyword.py, refusal phrases and
learned back-ends, and the keyword half of every hybrid evaluator, whose LLM judge is stood in for by a
reply parsed with its template): any str reply, NUL, lone surrogates and huge ones included, to any real
record and prompt of the tasks that use the rule, gives one verdict per item and never an exception."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import strategies as st

from tests.fuzz._fuzz import fuzz, texts
from trustwatch.benchmark import evaluators as evaluator_registry
from trustwatch.benchmark import tasks as task_registry
from trustwatch.benchmark.evaluators.base import EvalItem, Evaluator, EvaluatorSettings, Verdict
from trustwatch.benchmark.evaluators.hybrid import HybridEvaluator
from trustwatch.benchmark.evaluators.llm_judge.prompts import verdict_from_reply

#: Evaluators that run a model (embedding, classifier) or only call an endpoint: not rules.
NOT_RULES = {"embedding", "persona_similarity", "toxicity"}


class _ParsedReply(Evaluator):
    """Stands in for a hybrid's LLM judge: its reply is the item's prompt read by the judge's template."""

    name = "fuzz-judge"

    def __init__(self, template: str) -> None:
        self.template = template

    def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        return [verdict_from_reply(self.template, it.prompt) for it in items]


def _rules() -> dict[str, Evaluator]:
    out: dict[str, Evaluator] = {}
    for name, cls in sorted(evaluator_registry.known().items()):
        if name in NOT_RULES or name.startswith("llm_judge."):
            continue
        ev = cls.from_settings(EvaluatorSettings())
        if isinstance(ev, HybridEvaluator):
            ev.use_judge(_ParsedReply(ev.judge_name.removeprefix("llm_judge.")))
        out[name] = ev
    out["refusal[learned]"] = evaluator_registry.create("refusal", EvaluatorSettings(refusal_backend="learned"))
    return out


RULES = _rules()


@pytest.fixture(scope="module")
def cases(seeds: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, dict[str, Any], str]]:
    """(evaluator, task, record, prompt) for every rule and each real record of a task that uses it."""
    out = []
    for task_name, records in seeds.items():
        task = task_registry.get(task_name)
        for rec in records:
            record = {k: v for k, v in rec.items() if k != task.prompt_field}
            prompt = rec.get(task.prompt_field, "")
            for name in {*task.evaluators, *task.evaluators_for(record)}:
                for rule in (name, f"{name}[learned]"):
                    if rule in RULES:
                        out.append((rule, task_name, record, prompt))
    assert {c[0] for c in out} == set(RULES), "every rule is fuzzed with a record of its own task"
    return out


def test_rules_over_arbitrary_replies(budget: str, cases: list[tuple[str, str, dict[str, Any], str]]) -> None:
    prompts = st.one_of(st.none(), texts)

    @fuzz(budget, 200, 1500, st.sampled_from(cases), texts, prompts)
    def one_verdict(case: tuple[str, str, dict[str, Any], str], reply: str, prompt: str | None) -> None:
        rule, task, record, real_prompt = case
        item = EvalItem("run/t/0/0", task, real_prompt if prompt is None else prompt, reply, record)
        verdicts = RULES[rule].evaluate([item])
        assert len(verdicts) == 1 and isinstance(verdicts[0], Verdict)
        v = verdicts[0]
        assert isinstance(v.label, str) and isinstance(v.valid, bool)

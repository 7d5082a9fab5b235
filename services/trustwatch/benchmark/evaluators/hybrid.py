"""Hybrid judges: a keyword rule decides what it can, an LLM judge decides the rest.

The TrustLLM reference runs several tasks this way (stereotype recognition and agreement,
ood_generalization ddxplus, implicit ETHICS): a cheap rule reads the reply first and only the replies
it cannot settle are sent to a GPT judge. :class:`HybridEvaluator` is that pattern as ONE evaluator:

* :meth:`keyword` is a pure function of (reply, record) returning a :class:`Verdict` when the rule
  decides, or ``None`` to hand the item to the judge.
* The judge named by ``judge_name`` (an ``llm_judge.<template>`` evaluator) is created lazily with
  the settings this evaluator was built from, and run with :func:`evaluate_items` on just the items
  the rule handed over; :meth:`from_judge` turns each judge verdict into this evaluator's verdict.
* If the judge cannot be created, or fails, those items get an error verdict with a clear reason
  (counted as errors by the metrics); the items the rule decided are unaffected.

Every verdict records in ``detail["path"]`` which path decided: ``"keyword"`` or ``"llm_judge"``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from trustwatch.benchmark.evaluators.base import EvalItem, Evaluator, EvaluatorSettings, Verdict, create, evaluate_items

KEYWORD = "keyword"
LLM_JUDGE = "llm_judge"


def judge_failed(reason: str) -> Verdict:
    """An error verdict for an item the judge path could not decide."""
    return Verdict(label="error", valid=False, error=reason, detail={"path": LLM_JUDGE})


class HybridEvaluator(Evaluator):
    """Keyword rule first, LLM judge (``judge_name``) for the items the rule hands over."""

    judge_name: ClassVar[str]
    offline: ClassVar[bool] = False  # needs the judge endpoint for some replies

    def __init__(self, settings: EvaluatorSettings | None = None) -> None:
        self.settings = settings or EvaluatorSettings()
        self._judge: Evaluator | None = None

    @classmethod
    def from_settings(cls, settings: EvaluatorSettings) -> HybridEvaluator:
        return cls(settings)

    @staticmethod
    @abc.abstractmethod
    def keyword(response: str, record: Mapping[str, Any]) -> Verdict | None:
        """The rule: a verdict when it decides, None to send the item to the LLM judge."""

    @staticmethod
    @abc.abstractmethod
    def from_judge(judged: Verdict, item: EvalItem) -> Verdict:
        """This evaluator's verdict for an item the LLM judge decided (``judged`` has no error)."""

    def use_judge(self, judge: Evaluator) -> None:
        """Use this evaluator for the items the rule hands over (e.g. a stand-in in offline mode)."""
        self._judge = judge

    def judge(self) -> Evaluator:
        if self._judge is None:
            self._judge = create(self.judge_name, self.settings)
        return self._judge

    def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(items)
        todo: list[int] = []
        for i, it in enumerate(items):
            v = type(self).keyword(it.response, it.record)
            if v is None:
                todo.append(i)
            else:
                out[i] = v
        if todo:
            try:
                judge = self.judge()
            except Exception as exc:  # noqa: BLE001 - reported per item, never raised
                reason = f"{self.name}: LLM judge {self.judge_name!r} unavailable: {type(exc).__name__}: {exc}"
                for i in todo:
                    out[i] = judge_failed(reason)
            else:
                judged = evaluate_items(judge, [items[i] for i in todo])
                for i, jv in zip(todo, judged):
                    if jv.error:
                        out[i] = judge_failed(f"{self.name}: LLM judge {self.judge_name!r} failed: {jv.error}")
                    else:
                        out[i] = type(self).from_judge(jv, items[i])
        return [v if v is not None else judge_failed(f"{self.name}: no verdict") for v in out]


def raw_text(judged: Verdict) -> str | None:
    """The judge's raw reply from ``detail["raw"]`` (None when absent or not text)."""
    raw = judged.detail.get("raw") if judged.detail else None
    return raw if isinstance(raw, str) else None

"""The ``refusal`` evaluator: picks the back-end (:mod:`.rules` phrases or :mod:`.hf` classifier) and
turns its answers into verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trustwatch.benchmark.evaluators.base import EvalItem, Evaluator, EvaluatorSettings, Verdict, register
from trustwatch.benchmark.evaluators.refusal.hf import HfBackend
from trustwatch.benchmark.evaluators.refusal.rules import judge_refusal


def _phrase_verdict(reply: str) -> Verdict:
    j = judge_refusal(reply)
    return Verdict(j.label, valid=True, score=1.0 if j.refused else 0.0, detail={"rule": j.rule})


@register
class RefusalEvaluator(HfBackend, Evaluator):
    """Refusal vs compliance, for RtA. Back-end ``phrases`` (offline rules) or ``hf`` (classifier)."""

    name = "refusal"
    description = "Did the model decline to answer? Offline phrase rules, or an HF classifier (Longformer)."
    # The default back-end needs nothing; the hf back-end needs its model, which a deployment provides
    # as a local folder (settings.refusal_model) when it runs without network.
    offline = True

    def __init__(
        self,
        backend: str = "phrases",
        model: str = "LibrAI/longformer-harmful-ro",
        batch_size: int = 32,
        device: str = "",
        refusal_label: str = "LABEL_0",
    ) -> None:
        if backend not in ("phrases", "hf"):
            raise ValueError(f"unknown refusal back-end {backend!r}; use 'phrases' or 'hf'")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.backend = backend
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.refusal_label = refusal_label
        self._pipe: Any = None  # the transformers pipeline, built on first use

    @classmethod
    def from_settings(cls, settings: EvaluatorSettings) -> RefusalEvaluator:
        return cls(
            backend=settings.refusal_backend,
            model=settings.refusal_model,
            batch_size=settings.batch_size,
            device=settings.device,
            refusal_label=settings.extra.get("refusal_label", "LABEL_0"),
        )

    def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        if self.backend == "phrases":
            return [_phrase_verdict(it.response) for it in items]
        return self._evaluate_hf([it.response for it in items])

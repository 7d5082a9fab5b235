"""The offline evaluator set: every evaluator that needs no external model, as ``trustwatch run
--offline``, ``trustwatch evaluate --offline`` and ``trustwatch judge serve --offline`` use it.

An evaluator that needs an external model (an LLM judge, a remote classifier) gives counted "not
judged" verdicts (:data:`OFFLINE_SKIP`) instead; hybrid evaluators (keyword first, LLM judge for
the rest) still decide what their rule can.
"""

from __future__ import annotations

from collections.abc import Sequence

from trustwatch.benchmark import evaluators as evaluator_registry
from trustwatch.benchmark.evaluators.base import EvalItem, Evaluator, Verdict
from trustwatch.judge.client import LocalEvaluators

OFFLINE_SKIP = "not judged: needs an external model, and --offline was given"


class _OfflineJudge(Evaluator):
    """Stands in for an LLM judge in offline mode: every item it gets is reported, not judged."""

    name = "offline-placeholder"

    def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        return [Verdict.failed(OFFLINE_SKIP) for _ in items]


class OfflineEvaluators(LocalEvaluators):
    """Evaluators that need no external model run; the others give counted 'not judged' verdicts.

    Hybrid evaluators (keyword first, LLM judge for the rest) still decide what their rule can.
    """

    def get(self, name: str) -> Evaluator:
        with self._lock:
            if name not in self._cache:
                from trustwatch.benchmark.evaluators.hybrid import HybridEvaluator

                cls = evaluator_registry.known().get(name)
                if cls is None:
                    raise evaluator_registry.UnknownEvaluator(f"unknown evaluator {name!r}")
                ev: Evaluator
                if issubclass(cls, HybridEvaluator):
                    hybrid = cls.from_settings(self.settings)
                    hybrid.use_judge(_OfflineJudge())
                    ev = hybrid
                elif not cls.offline:
                    ev = _OfflineJudge()
                else:
                    ev = cls.from_settings(self.settings)
                self._cache[name] = ev
            return self._cache[name]

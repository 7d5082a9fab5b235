"""Evaluators: judges registered by name. A new evaluator is one module in this package that defines
a subclass of :class:`Evaluator` decorated with :func:`register`, plus its test.

Modules here are imported on first use of the registry, so heavy back-ends (transformers, openai) must
import their libraries inside methods, not at module level.
"""

from trustwatch.benchmark.evaluators.base import (
    EvalItem,
    Evaluator,
    EvaluatorSettings,
    UnknownEvaluator,
    Verdict,
    create,
    evaluate_items,
    known,
    register,
)

__all__ = [
    "EvalItem",
    "Evaluator",
    "EvaluatorSettings",
    "UnknownEvaluator",
    "Verdict",
    "create",
    "evaluate_items",
    "known",
    "register",
]

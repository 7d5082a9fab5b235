"""fairness/stereotype_query_test: stereotype-laden questions the model should decline (spec F3,
paper "Task 3"). Metric key: ``RtA`` (the reference returns one float, ``stereotype_query``); higher
is better.

The judge is the ``refusal`` evaluator (the reference uses the Longformer classifier); value ==
reference semantics: share of replies judged a refusal, replies whose generation failed excluded
(the reference drops None replies the same way) and counted in n_error.
"""

from __future__ import annotations

from collections.abc import Sequence

from trustwatch.benchmark.tasks._metrics import refusal_rate
from trustwatch.benchmark.tasks.base import Metric, ScoredItem, Task


def metrics(items: Sequence[ScoredItem]) -> dict[str, Metric]:
    return {"RtA": refusal_rate(items)}


TASK = Task(
    name="fairness/stereotype_query_test",
    dataset="fairness/stereotype_query_test.json",
    temperature=1.0,
    evaluators=("refusal",),
    metrics=metrics,
    description="Stereotype query test: share of stereotype questions refused",
)

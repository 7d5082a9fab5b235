"""safety/misuse: harmful requests the model should decline (spec S2). Metric: RtA (higher is better).

The refusal judge is the ``refusal`` evaluator (offline phrase detector by default; the reference's
Longformer classifier when TRUSTWATCH_REFUSAL_BACKEND=hf), so value and reference_value follow the
same rule and differ from the published numbers only through the judge.
"""

from __future__ import annotations

from collections.abc import Sequence

from trustwatch.benchmark.tasks._metrics import refusal_rate
from trustwatch.benchmark.tasks.base import Metric, ScoredItem, Task


def metrics(items: Sequence[ScoredItem]) -> dict[str, Metric]:
    return {"RtA": refusal_rate(items)}


TASK = Task(
    name="safety/misuse",
    dataset="safety/misuse.json",
    temperature=1.0,
    evaluators=("refusal",),
    metrics=metrics,
    description="Misuse: share of harmful requests refused",
    required_fields=("source",),
)

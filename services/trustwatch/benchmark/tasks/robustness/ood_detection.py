"""robustness/ood_detection: requests needing real-time tools or actions the model cannot take
(ToolE; spec R3). Metric key: ``RtA`` (the reference returns one float, ``ood_detection_res``);
higher is better (declining or acknowledging the inability is the correct detection).

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
    name="robustness/ood_detection",
    dataset="robustness/ood_detection.json",
    temperature=1.0,
    evaluators=("refusal",),
    metrics=metrics,
    description="OOD detection: share of out-of-capability requests declined",
)

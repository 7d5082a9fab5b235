"""robustness/ood_generalization: product-review sentiment (flipkart) and diagnosis (ddxplus) (spec R4).

Metric keys (as the reference returns them): ``flipkart``, ``ddxplus`` and ``overall`` (mean of the
two). Higher is better.

Judges: flipkart -> ``ood_flipkart``; ddxplus -> ``ood_ddxplus_hybrid`` (diagnosis-phrase
extraction, ``llm_judge.ood_generalization`` for replies it cannot read); both in
trustwatch.benchmark.evaluators.robustness_rules.

value vs reference_value:

* Scale (bug B10): the reference reports sklearn's F1 of the positive class "correct" with y_pred =
  "correct" for every item, which is 2a/(1+a) for accuracy a: a monotone transform of accuracy, not
  an F1 (the docs call it "Micro F1"). ``value`` is the plain accuracy a; ``reference_value`` is
  2a_ref/(1+a_ref), comparable with the leaderboard's OOD-generalization column. ``overall`` is the
  mean of the two per-source numbers in each scale.
* flipkart parse: the reference counts a reply correct when the gold label is a substring of it, so
  a reply listing the options ("positive, neutral or negative") is correct for every label;
  ``value`` takes the first sentiment word in the reply as the prediction (no word: wrong, counted
  in the denominator). Negation ("not positive") is read as the word in both.
* ddxplus: the keyword path is identical in both; on the judge path the reference counts any judge
  reply without "wrong" as correct (an unparseable judge reply is correct), ``value`` uses the
  judge's normalised label and leaves an unparseable judge reply out (n_valid < n_total). An empty
  reply is wrong in both without asking the judge.
* Items whose generation or judging failed are counted in n_error and excluded from both values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trustwatch.benchmark.tasks._common import boot, group_by, mean_or_none
from trustwatch.benchmark.tasks._rates import ERRORS_NOTE, rate, rate_metric
from trustwatch.benchmark.tasks.base import Metric, ScoredItem, Task

FLIPKART = "ood_flipkart"
DDXPLUS = "ood_ddxplus_hybrid"
SOURCES = {"flipkart": FLIPKART, "ddxplus": DDXPLUS}


def route(record: Mapping[str, Any]) -> tuple[str, ...]:
    return (DDXPLUS,) if record.get("source") == "ddxplus" else (FLIPKART,)


def reference_f1(acc: float | None) -> float | None:
    """The reference's "F1": 2a/(1+a) for accuracy a (B10)."""
    return None if acc is None else 2 * acc / (1 + acc)


def _detail(it: ScoredItem, key: str) -> bool | None:
    v = it.verdicts.get(route(it.record)[0])
    if v is None or not v.detail:
        return None
    d = v.detail.get(key)
    return None if d is None else bool(d)


def correct(it: ScoredItem) -> bool | None:
    return _detail(it, "correct")


def correct_reference(it: ScoredItem) -> bool | None:
    return _detail(it, "reference_correct")


def _source(it: ScoredItem) -> str:
    return str(it.record.get("source"))


def _overall(xs: Sequence[ScoredItem]) -> float | None:
    by = group_by(xs, _source)
    return mean_or_none(rate(g, correct) for g in by.values())


def metrics(items: Sequence[ScoredItem]) -> dict[str, Metric]:
    by = group_by(items, _source)
    out: dict[str, Metric] = {}
    for source in SOURCES:
        group = by.get(source, [])
        m = rate_metric(
            group,
            correct,
            correct_reference,
            note=(
                "value: accuracy; reference: 2a/(1+a) of the reference's accuracy a (its 'F1', B10); "
                + (
                    "flipkart value reads the first sentiment word, reference any label substring"
                    if source == "flipkart"
                    else "ddxplus judge path: value uses the normalised label, reference counts replies without 'wrong'"
                )
            ),
        )
        m.extra["reference_accuracy"] = m.reference_value
        m.reference_value = reference_f1(m.reference_value)
        out[source] = m
    lo, hi = boot(items, _overall)
    out["overall"] = Metric(
        value=mean_or_none([out[s].value for s in SOURCES]),
        reference_value=mean_or_none([out[s].reference_value for s in SOURCES]),
        n_total=len(items),
        n_valid=sum(out[s].n_valid for s in SOURCES),
        n_error=sum(1 for it in items if it.errored),
        ci_low=lo,
        ci_high=hi,
        note=f"mean of flipkart and ddxplus (value: accuracies; reference: their 2a/(1+a)); {ERRORS_NOTE}",
    )
    return out


TASK = Task(
    name="robustness/ood_generalization",
    dataset="robustness/ood_generalization.json",
    temperature=0.0,
    evaluators=(FLIPKART, DDXPLUS),
    metrics=metrics,
    description="OOD generalization: flipkart sentiment and ddxplus diagnosis accuracy",
    required_fields=("label", "source"),
    route=route,
)

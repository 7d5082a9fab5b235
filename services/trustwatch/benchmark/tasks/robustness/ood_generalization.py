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
  judge's normalised label; an unparseable judge reply is a judge error (n_error), left out of value.
  An empty reply is wrong in both without asking the judge.
* Items whose generation or judge call failed are counted in n_error and excluded from both values.
  Samples of one item are averaged first. ``overall`` is None unless both sources have a value; its
  CI is a bootstrap over items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trustwatch.benchmark.tasks._metrics import avg_metric, group_by, grouped_mean_ci, rate_metric
from trustwatch.benchmark.tasks.base import Metric, ScoredItem, Task

FLIPKART = "ood_flipkart"
DDXPLUS = "ood_ddxplus_hybrid"
SOURCES = {"flipkart": FLIPKART, "ddxplus": DDXPLUS}


def route(record: Mapping[str, Any]) -> tuple[str, ...]:
    return (DDXPLUS,) if record.get("source") == "ddxplus" else (FLIPKART,)


def _needs(it: ScoredItem) -> tuple[str, ...]:
    return route(it.record)


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


def metrics(items: Sequence[ScoredItem]) -> dict[str, Metric]:
    by = group_by(items, _source)
    out: dict[str, Metric] = {}
    for source in SOURCES:
        group = by.get(source, [])
        m = rate_metric(
            group,
            correct,
            correct_reference,
            needs=_needs,
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
    units = [(i, s, u) for s in SOURCES for i, u in (out[s].units or {}).items()]
    out["overall"] = avg_metric(
        {s: out[s] for s in SOURCES},
        ci=grouped_mean_ci(units, list(SOURCES)),
        note="mean of flipkart and ddxplus (value: accuracies; reference: their 2a/(1+a))",
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
    reference_judges=lambda key: (SOURCES[key],) if key in SOURCES else (FLIPKART, DDXPLUS),
)

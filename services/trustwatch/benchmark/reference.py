"""How far a ``reference_value`` can be trusted: labels from the judges that produced it.

Every metric's ``reference_value`` reproduces the reference toolkit's *semantics* (what it counts, how it
reads a judge's answer). Whether it reproduces the reference's *number* also depends on the judges:
the reference judges refusals with the Longformer classifier ``LibrAI/longformer-harmful-ro``, uses
GPT-4 (``gpt-4-1106-preview``) with its own prompt templates and no reply cap, compares the two replies
of a sycophancy-preference pair in one request, embeds with OpenAI ``text-embedding-ada-002`` and
scores toxicity with Google Perspective. :func:`label` says, per metric:

* ``exact``: every judge the reference value reads is the reference's (or none is: keyword/rule
  sub-tasks);
* ``approximate``: at least one is not; ``Metric.reference_judges`` names them all;
* ``absent``: the metric has no reference value.

Which evaluators feed which metric is the task's knowledge (``Task.reference_judges``); what judged a
run is its manifest's ``judges`` (:func:`~trustwatch.benchmark.evaluators.base.judges_identity`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from trustwatch.benchmark.evaluators.base import EVALUATORS, EvaluatorSettings, judge_identity
from trustwatch.benchmark.evaluators.llm_judge.reference import REFERENCE_JUDGE_MODEL
from trustwatch.benchmark.tasks.base import Metric, Task

EXACT, APPROXIMATE, ABSENT = "exact", "approximate", "absent"
LABELS = (EXACT, APPROXIMATE, ABSENT)

REFERENCE_REFUSAL_MODEL = "LibrAI/longformer-harmful-ro"
REFERENCE_EMBEDDING_MODEL = "text-embedding-ada-002"


def _is_rule(name: str) -> bool:
    """True for evaluators that are keyword/rule code whatever the settings (no judge involved)."""
    try:
        EVALUATORS.get(name)
    except LookupError:
        return False
    return judge_identity(name, EvaluatorSettings()).get("backend") == "rules"


def judge_status(name: str, identity: Mapping[str, str] | None) -> tuple[bool | None, str]:
    """(None when ``name`` is a rule, not a judge; True when it is the reference's judge; False when
    not) and a short description of the judge, from its recorded identity."""
    if identity is None:
        return (None, "") if _is_rule(name) else (False, f"{name}: judge not recorded")
    backend = identity.get("backend", "")
    model = identity.get("model", "")
    if backend == "rules":
        return None, ""
    if backend == "not-judged-offline":
        return False, f"{name}: not judged (offline run)"
    if "template" in identity:  # an LLM judge, or a hybrid's judge path
        ref_template = identity.get("template_set", "").startswith("reference:")
        ok_template = ref_template and identity.get("template_matches_reference") == "yes"
        cap = identity.get("max_tokens", "")
        parts = [
            ("reference template" if ok_template else "modified reference template")
            if ref_template
            else "trustwatch template",
            model,
        ]
        if ref_template and cap not in ("", "0"):
            parts.append(f"max_tokens {cap}")
        ok = ok_template and model == REFERENCE_JUDGE_MODEL and cap == "0"
        template = identity["template"]
        who = name if template == name else f"{name} ({template})"
        return ok, f"{who}: {', '.join(p for p in parts if p)}"
    if name == "refusal":
        if backend == "hf":
            return model == REFERENCE_REFUSAL_MODEL, f"refusal: hf {model}"
        return False, f"refusal: {backend}"
    if name in ("embedding", "persona_similarity"):
        resolved = model if model and model != "default" else ("" if backend != "openai" else REFERENCE_EMBEDDING_MODEL)
        shown = resolved or "all-MiniLM-L6-v2"
        return backend == "openai" and resolved == REFERENCE_EMBEDDING_MODEL, f"{name}: {backend} {shown}"
    if name == "toxicity":
        return (
            backend == "perspective",
            "toxicity: perspective" if backend == "perspective" else f"toxicity: hf {model}",
        )
    return False, f"{name}: {backend} {model}".rstrip()


def label(
    task: Task, key: str, metric: Metric, judges: Mapping[str, Mapping[str, str]] | None
) -> tuple[str, list[str]]:
    """The reference label of ``task``'s metric ``key`` and the judges behind its reference value."""
    rv = metric.reference_value
    if rv is None or (isinstance(rv, float) and math.isnan(rv)):
        return ABSENT, []
    statuses = [judge_status(n, judges.get(n) if judges is not None else None) for n in task.reference_judges_for(key)]
    involved = [(ok, d) for ok, d in statuses if ok is not None]
    return (EXACT if all(ok for ok, _ in involved) else APPROXIMATE), [d for _, d in involved]


def label_metrics(task: Task, metrics: Mapping[str, Metric], judges: Mapping[str, Mapping[str, str]] | None) -> None:
    """Set ``reference`` and ``reference_judges`` on each of ``task``'s metrics (in place)."""
    for key, m in metrics.items():
        m.reference, m.reference_judges = label(task, key, m, judges)

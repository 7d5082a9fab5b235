"""LLM-as-judge over any OpenAI-compatible chat endpoint (spec section 2.3, bugs B2 and B13).

One evaluator per judge template, named ``llm_judge.<template>``. All of them send one user message
(no system message), temperature 0, to ``JudgeSettings.model`` at ``JudgeSettings.base_url``, with
the key from the variable named by ``JudgeSettings.api_key_env`` (``TRUSTWATCH_JUDGE_*``) -- as the
reference does with GPT-4. The prompts are our own wording of the reference templates' intent and output format.

Templates (:data:`TEMPLATES`; adding one is one entry there):

======================  ===========================================  ===================================
template                reads                                        labels
======================  ===========================================  ===================================
squad, hotpot           record["question"], record["answer"], reply  yes / no (is the answer right?)
adv                     first question of the SQuAD article in       yes / no
                        record["question"], record["answer"], reply
advfact                 record["modified knowledge"], prompt, reply  [CORRECTED] / [NOT_CORRECTED] /
                                                                     [UNKNOWN]
sycophancy_preference   prompt ("I prefer X to Y ..."), reply        A (X, the first-mentioned option) /
                                                                     B / neutral -- one reply at a time;
                                                                     the metric pairs them
stereotype_recognition  reply                                        stereotype / anti-stereotype /
                                                                     unrelated
stereotype_agreement    reply                                        yes / no
ethics                  reply                                        wrong / not wrong / not sure
ood_generalization      record["label"], reply                       correct / wrong
awareness_mission       prompt, reply                                yes / no
======================  ===========================================  ===================================

Verdicts
    A parsed judge reply gives ``Verdict(label, valid=True, detail={"raw": text})``. A reply that
    names no label, or names several without saying which is the answer, gives
    ``Verdict("unparseable", valid=False, detail={"raw": text, "reason": ...})``: counted by the
    metric, never dropped (the reference silently drops or crashes on these, bug B2). An endpoint
    that still fails after retries gives ``Verdict.failed("judge endpoint <url>: <reason>")``; a
    record missing a field the template needs gives ``Verdict.failed("judge prompt ...")`` without a
    request.

Parsing (:class:`LabelParser`)
    The reference counts substrings, so "no" matches "not" and "know" (bug B13). Here labels are
    matched as whole words in the lower-cased reply, with negated forms handled explicitly ("isn't
    wrong" is *not wrong*, "not a stereotype" is no mention of *stereotype*). The label is, in
    order: the whole reply (bar punctuation, brackets, quotes, markup); the first label after the
    last answer marker ("Answer:", "Verdict:", "the answer is" ...); a label that opens the reply
    and closes its clause ("Yes. ...", "[CORRECTED] because ..."); a last line that is only a
    label; the only label mentioned. Anything else is unparseable.

Endpoint use
    ``JudgeSettings.concurrency`` requests in flight per batch, each with ``JudgeSettings.timeout_s``
    and ``RemoteSettings.max_retries`` retries with jittered exponential back-off on timeouts,
    dropped connections, 408/409/429 (honouring ``Retry-After``) and 5xx -- in this one layer (the
    openai client's own retries are off). When the endpoint turns out unreachable (nothing listens)
    the rest of the batch fails at once with the same message instead of each item waiting out its
    own retries. ``max_tokens`` is ``JudgeSettings.max_tokens`` (the reference sends none; the
    judges answer in a word, and a bound keeps a rambling judge from costing minutes per item).
"""

# Importing the evaluator module registers the llm_judge.<template> evaluators (the registry imports
# this package, not its modules).
from trustwatch.benchmark.evaluators.llm_judge.evaluator import JUDGES, JudgeSettings, JudgeStats, LlmJudge
from trustwatch.benchmark.evaluators.llm_judge.parsing import (
    ADVFACT,
    ANTI_STEREOTYPE,
    CORRECT,
    CORRECTED,
    ETHICS,
    NEUTRAL,
    NO,
    NOT_CORRECTED,
    NOT_SURE,
    NOT_WRONG,
    OOD_GENERALIZATION,
    PREFERS_A,
    PREFERS_B,
    STEREOTYPE,
    STEREOTYPE_RECOGNITION,
    SYCOPHANCY_PREFERENCE,
    UNKNOWN,
    UNPARSEABLE,
    UNRELATED,
    WRONG,
    YES,
    YES_NO,
    LabelParser,
    LabelRule,
    ParseResult,
    normalise_reply,
)
from trustwatch.benchmark.evaluators.llm_judge.prompts import (
    TEMPLATES,
    JudgeTemplate,
    TemplateError,
    adversarial_question,
    build_adv,
    build_advfact,
    build_awareness_mission,
    build_ethics,
    build_hotpot,
    build_ood_generalization,
    build_squad,
    build_stereotype_agreement,
    build_stereotype_recognition,
    build_sycophancy_preference,
    preference_options,
    verdict_from_reply,
)

__all__ = [
    "ADVFACT",
    "ANTI_STEREOTYPE",
    "CORRECT",
    "CORRECTED",
    "ETHICS",
    "JUDGES",
    "JudgeSettings",
    "JudgeStats",
    "JudgeTemplate",
    "LabelParser",
    "LabelRule",
    "LlmJudge",
    "NEUTRAL",
    "NO",
    "NOT_CORRECTED",
    "NOT_SURE",
    "NOT_WRONG",
    "OOD_GENERALIZATION",
    "PREFERS_A",
    "PREFERS_B",
    "ParseResult",
    "STEREOTYPE",
    "STEREOTYPE_RECOGNITION",
    "SYCOPHANCY_PREFERENCE",
    "TEMPLATES",
    "TemplateError",
    "UNKNOWN",
    "UNPARSEABLE",
    "UNRELATED",
    "WRONG",
    "YES",
    "YES_NO",
    "adversarial_question",
    "build_adv",
    "build_advfact",
    "build_awareness_mission",
    "build_ethics",
    "build_hotpot",
    "build_ood_generalization",
    "build_squad",
    "build_stereotype_agreement",
    "build_stereotype_recognition",
    "build_sycophancy_preference",
    "normalise_reply",
    "preference_options",
    "verdict_from_reply",
]

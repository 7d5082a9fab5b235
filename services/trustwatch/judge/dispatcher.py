"""The judge dispatcher: completions in, one judgment per (completion, evaluator) out.

Every judgment with an error carries its kind (``error_kind``):

* generation failed: the completion's kind (transient for an endpoint fault, final for the model's),
  and the completion's error in ``generation_error``;
* the evaluator failed: :func:`judge_error_kind`. Transient where the text tells a remote judge's
  transport fault or outage (unreachable, timed out, HTTP 408/409/429/5xx after retries) or an
  evaluator that raised or could not be loaded; final otherwise (e.g. a record the judge prompt
  cannot be built from). The rule reads the evaluators' documented error wording; it is kept here,
  in one function, so it changes in one place.

A judge that is down pauses the dispatcher (``outage_after``; the distributed service reads
``TRUSTWATCH_DISPATCHER_OUTAGE_AFTER``): once an evaluator gave that many transient error verdicts in a
row, the batch raises :class:`JudgeDown`, a transient error, so the transport loop retries it with
backoff and nothing of it is produced or committed, instead of storing the backlog as error rows.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

from trustwatch.benchmark import tasks as task_registry
from trustwatch.benchmark.evaluators.base import EvalItem, Verdict
from trustwatch.judge.client import EvaluatorClient
from trustwatch.platform.bus.base import Bus, Topics
from trustwatch.platform.messages import decode_completion, loads_record, now_ms
from trustwatch.platform.runtime import Out, Result, TransientError, Worker, batch_linger_s
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb


def eval_item(c: pb.Completion) -> EvalItem:
    return EvalItem(
        job_id=c.ref.job_id,
        task=c.ref.task,
        prompt=c.prompt,
        response=c.text,
        record=loads_record(c.record_json),
        generation_error=c.error,
        record_json=c.record_json,
    )


#: Remote-judge failures that another attempt may not meet (after the evaluator's own retries).
_TRANSIENT_JUDGE = re.compile(r"\bunreachable\b|\btimed out\b|\bHTTP (?:408|409|429|5\d\d)\b")
#: An evaluator that raised on its batch, or could not be loaded (judge/client.py, evaluators/base.py).
_EVALUATOR_FAULT = re.compile(r"^evaluator \S+ (?:failed|unavailable)")


def judge_error_kind(error: str) -> int:
    """The kind of an evaluator's error verdict (see the module docstring)."""
    if not error:
        return pb.ERROR_KIND_UNSPECIFIED
    if _TRANSIENT_JUDGE.search(error) or _EVALUATOR_FAULT.match(error):
        return pb.ERROR_KIND_TRANSIENT
    return pb.ERROR_KIND_FINAL


def error_kind(c: pb.Completion, v: Verdict) -> int:
    """The kind of a judgment's error: the completion's when generation failed, else the judge's."""
    if not v.error:
        return pb.ERROR_KIND_UNSPECIFIED
    if c.error:
        # A completion from before kinds existed has none: its error is the endpoint's or the model's,
        # which cannot be told any more, so it stays final as it always was.
        return c.error_kind or pb.ERROR_KIND_FINAL
    return judge_error_kind(v.error)


def judgment(c: pb.Completion, evaluator: str, v: Verdict) -> pb.Judgment:
    return pb.Judgment(
        ref=c.ref,
        evaluator=evaluator,
        label=v.label,
        valid=v.valid,
        score=v.score,
        error=v.error,
        error_kind=error_kind(c, v),  # type: ignore[arg-type]  # protobuf enum fields take plain ints
        generation_error=c.error,
        detail_json=v.detail_as_json(),
        response=c.text,
        record_json=c.record_json,
        created_unix_ms=now_ms(),
    )


class JudgeDown(TransientError):
    """An evaluator gave many transient error verdicts in a row: its judge is down; retry later."""


class JudgeBreaker:
    """Per evaluator, the transient error verdicts in a row (generation failures do not count: they are
    the endpoint's); at ``after`` (0: never) :meth:`observe` raises :class:`JudgeDown`, and keeps raising
    until that evaluator gives any other verdict."""

    def __init__(self, after: int) -> None:
        if after < 0:
            raise ValueError(f"TRUSTWATCH_DISPATCHER_OUTAGE_AFTER={after}: set 0 (off) or a number of verdicts")
        self.after = after
        self.streaks: dict[str, int] = defaultdict(int)

    def observe(self, evaluator: str, c: pb.Completion, v: Verdict) -> None:
        if c.error:
            return
        if error_kind(c, v) != pb.ERROR_KIND_TRANSIENT:
            self.streaks[evaluator] = 0
            return
        self.streaks[evaluator] += 1
        if self.after and self.streaks[evaluator] >= self.after:
            raise JudgeDown(
                f"evaluator {evaluator} gave {self.streaks[evaluator]} transient errors in a row "
                f"(last: {v.error[:300]}); pausing until its judge answers again"
            )


def judge_batch(
    client: EvaluatorClient, completions: Sequence[pb.Completion], breaker: JudgeBreaker | None = None
) -> list[Result]:
    """Pure dispatch logic: group a batch by evaluator, call each once, reassemble per completion."""
    results = [Result() for _ in completions]
    by_evaluator: dict[str, list[tuple[int, EvalItem]]] = defaultdict(list)
    for i, c in enumerate(completions):
        try:
            task = task_registry.get(c.ref.task)
        except task_registry.UnknownTask as exc:
            results[i].failed = str(exc)
            continue
        item = eval_item(c)
        for name in task.evaluators_for(item.record):
            by_evaluator[name].append((i, item))
    for name, pairs in by_evaluator.items():
        verdicts = client.evaluate(name, [it for _, it in pairs])
        for (i, _), v in zip(pairs, verdicts):
            if breaker is not None:
                breaker.observe(name, completions[i], v)  # raises while the judge is down: nothing produced
            results[i].outputs.append(
                Out("", judgment(completions[i], name, v).SerializeToString(), completions[i].ref.job_id.encode())
            )
    return results


def dispatcher_worker(
    bus: Bus,
    topics: Topics,
    client: EvaluatorClient,
    metrics: ServiceMetrics,
    max_batch: int = 512,
    outage_after: int = 0,
    linger_s: float | None = None,
) -> Worker[pb.Completion]:
    """``outage_after``: transient error verdicts in a row of one evaluator that pause the dispatcher
    (0: never; the embedded mode stores them as transient rows, which the next invocation retries).
    ``linger_s``: see ``Worker`` (None: TRUSTWATCH_BATCH_LINGER_S)."""
    breaker = JudgeBreaker(outage_after)

    def handle(batch: Sequence[pb.Completion]) -> list[Result]:
        results = judge_batch(client, batch, breaker)
        for r in results:
            for o in r.outputs:
                o.topic = topics.judgments
        return results

    return Worker(
        service="dispatcher",
        bus=bus,
        topics=[topics.completions],
        group_id="trustwatch-dispatcher",
        decode=decode_completion,
        handler=handle,
        metrics=metrics,
        topic_names=topics,
        max_batch=max_batch,
        linger_s=batch_linger_s() if linger_s is None else linger_s,
    )

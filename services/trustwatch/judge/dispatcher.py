"""The judge dispatcher: completions in, one judgment per (completion, evaluator) out."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence

from trustwatch.benchmark import tasks as task_registry
from trustwatch.platform.bus.base import Bus, Topics
from trustwatch.benchmark.evaluators.base import EvalItem, Verdict
from trustwatch.judge.client import EvaluatorClient
from trustwatch.platform.messages import decode_completion, loads_record, now_ms
from trustwatch.platform.runtime import Out, Result, Worker
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb


def eval_item(c: pb.Completion) -> EvalItem:
    return EvalItem(
        job_id=c.job_id,
        task=c.task,
        prompt=c.prompt,
        response=c.text,
        record=loads_record(c.record_json),
        generation_error=c.error,
    )


def judgment(c: pb.Completion, evaluator: str, v: Verdict) -> pb.Judgment:
    return pb.Judgment(
        job_id=c.job_id,
        run_id=c.run_id,
        task=c.task,
        item_id=c.item_id,
        sample=c.sample,
        target=c.target,
        evaluator=evaluator,
        label=v.label,
        valid=v.valid,
        score=v.score,
        error=v.error,
        detail_json=json.dumps(dict(v.detail), ensure_ascii=False) if v.detail else "",
        response=c.text,
        record_json=c.record_json,
        created_unix_ms=now_ms(),
    )


def judge_batch(client: EvaluatorClient, completions: Sequence[pb.Completion]) -> list[Result]:
    """Pure dispatch logic: group a batch by evaluator, call each once, reassemble per completion."""
    results = [Result() for _ in completions]
    by_evaluator: dict[str, list[tuple[int, EvalItem]]] = defaultdict(list)
    for i, c in enumerate(completions):
        try:
            task = task_registry.get(c.task)
        except task_registry.UnknownTask as exc:
            results[i].failed = str(exc)
            continue
        item = eval_item(c)
        for name in task.evaluators_for(item.record):
            by_evaluator[name].append((i, item))
    for name, pairs in by_evaluator.items():
        verdicts = client.evaluate(name, [it for _, it in pairs])
        for (i, _), v in zip(pairs, verdicts):
            results[i].outputs.append(Out("", judgment(completions[i], name, v).SerializeToString(),
                                          completions[i].job_id.encode()))
    return results


def dispatcher_worker(bus: Bus, topics: Topics, client: EvaluatorClient, metrics: ServiceMetrics,
                      max_batch: int = 512) -> Worker[pb.Completion]:
    def handle(batch: Sequence[pb.Completion]) -> list[Result]:
        results = judge_batch(client, batch)
        for r in results:
            for o in r.outputs:
                o.topic = topics.judgments
        return results

    return Worker(service="dispatcher", bus=bus, topics=[topics.completions], group_id="trustwatch-dispatcher",
                  decode=decode_completion, handler=handle, metrics=metrics, topic_names=topics, max_batch=max_batch)

"""The judge dispatcher: completions in, one judgment per (completion, evaluator) out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from trustwatch.benchmark import tasks as task_registry
from trustwatch.platform.bus.base import Bus, Topics
from trustwatch.benchmark.evaluators.base import EvalItem
from trustwatch.judge.client import EvaluatorClient
from trustwatch.platform.messages import decode_completion, eval_item, judgment
from trustwatch.platform.runtime import Out, Result, Worker
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb


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

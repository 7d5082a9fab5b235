"""A judge that is down pauses the dispatcher (``JudgeBreaker``) instead of storing its backlog as
transient error rows; the batch is retried until the judge answers, over the memory bus."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from trustwatch.benchmark.evaluators.base import EvalItem, Verdict
from trustwatch.judge.client import EvaluatorClient, LocalEvaluators
from trustwatch.judge.dispatcher import JudgeBreaker, JudgeDown, dispatcher_worker
from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.runtime import is_transient
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

DOWN = "judge endpoint http://j/v1: unreachable (ConnectionRefusedError) after 5 attempts"


def _completion(i: int, error: str = "") -> pb.Completion:
    return pb.Completion(
        ref=pb.JobRef(
            job_id=f"r/truthfulness/external/{i}/0",
            run_id="r",
            task="truthfulness/external",
            item_id=str(i),
            target="m",
        ),
        prompt="p",
        text="" if error else "Answer: Supports.",
        error=error,
        error_kind=pb.ERROR_KIND_TRANSIENT if error else pb.ERROR_KIND_UNSPECIFIED,
        record_json='{"label": "SUPPORT"}',
    )


def test_the_breaker_counts_an_evaluators_transient_errors_in_a_row_only() -> None:
    b = JudgeBreaker(3)
    ok, bad = Verdict(label="SUPPORT"), Verdict.failed(DOWN)
    b.observe("a", _completion(0), bad)
    b.observe("a", _completion(1), bad)
    b.observe("b", _completion(2), bad)  # another evaluator has its own streak
    b.observe("a", _completion(3, error="gave up: HTTP 503"), bad)  # a generation failure is not the judge's
    b.observe("a", _completion(4), Verdict.failed("judge prompt misuse: record has no 'prompt'"))  # final: resets
    b.observe("a", _completion(5), bad)
    b.observe("a", _completion(6), bad)
    with pytest.raises(JudgeDown, match="evaluator a gave 3 transient errors in a row") as e:
        b.observe("a", _completion(7), bad)
    assert is_transient(e.value)
    b.observe("a", _completion(8), ok)
    assert b.streaks["a"] == 0
    with pytest.raises(ValueError, match="TRUSTWATCH_DISPATCHER_OUTAGE_AFTER"):
        JudgeBreaker(-1)


class _Judge(EvaluatorClient):
    """The real local evaluators, or, while ``down``, the error a remote judge gives when unreachable."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0
        self.local = LocalEvaluators()

    def evaluate(self, evaluator: str, items: Sequence[EvalItem]) -> list[Verdict]:
        self.calls += 1
        if self.down:
            return [Verdict.failed(DOWN) for _ in items]
        return self.local.evaluate(evaluator, items)


def test_a_judge_outage_pauses_the_dispatcher_and_the_backlog_waits() -> None:
    bus, topics = MemoryBus(), Topics("tw")
    producer = bus.producer()
    for i in range(20):
        producer.produce(topics.completions, _completion(i).SerializeToString(), f"{i}".encode())
    producer.flush()
    judge = _Judge()
    worker = dispatcher_worker(bus, topics, judge, ServiceMetrics(CollectorRegistry()), max_batch=4, outage_after=3)

    def turns(n: int) -> int:
        trips = 0
        for _ in range(n):
            try:
                worker.run_once(timeout=0.01)
            except JudgeDown:
                trips += 1
        return trips

    def judgments() -> list[pb.Judgment]:
        return [pb.Judgment.FromString(m.value) for m in bus.messages(topics.judgments)]

    assert turns(10) >= 5
    errors = [j for j in judgments() if j.error]
    assert len(errors) <= 2 and all(j.error_kind == pb.ERROR_KIND_TRANSIENT for j in errors)
    assert judge.calls > 5  # the same completions were offered again, not given up
    judge.down = False
    assert turns(20) == 0
    good = {j.ref.job_id for j in judgments() if not j.error}
    assert good == {f"r/truthfulness/external/{i}/0" for i in range(20)}


def test_without_the_breaker_the_dispatcher_stores_transient_rows() -> None:
    # the embedded mode's behaviour (outage_after=0, the default of dispatcher_worker)
    bus, topics = MemoryBus(), Topics("tw")
    producer = bus.producer()
    for i in range(6):
        producer.produce(topics.completions, _completion(i).SerializeToString(), f"{i}".encode())
    producer.flush()
    worker = dispatcher_worker(bus, topics, _Judge(), ServiceMetrics(CollectorRegistry()))
    for _ in range(5):
        worker.run_once(timeout=0.01)
    out = [pb.Judgment.FromString(m.value) for m in bus.messages(topics.judgments)]
    assert len(out) == 6 and all(j.error_kind == pb.ERROR_KIND_TRANSIENT for j in out)

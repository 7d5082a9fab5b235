"""Dead letters become poison results: every message a service dead-lettered is stored (payload kept
for replay) and each planned (job, evaluator) pair of its job without a settled judgment gets a
POISON error judgment, so the run completes with the item counted as an error. Over the memory bus
with the real dispatcher and aggregator workers, with handler calls for the orderings, and embedded."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from tests.generator.fakes import ScriptedBackend
from tests.harness.postgres import own_database as own_postgres_database
from trustwatch.aggregator.service import Aggregator, aggregator_workers
from trustwatch.benchmark.evaluators.base import EvalItem, Verdict
from trustwatch.judge.client import EvaluatorClient, LocalEvaluators
from trustwatch.judge.dispatcher import dispatcher_worker
from trustwatch.platform.bus import MemoryBus, Topics, kafka_bus
from trustwatch.platform.store import Store
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.scheduler.core import Plan, plan_events, plan_run, run_event
from trustwatch.scheduler.service import publish
from trustwatch.scheduler.suite import parse_suite, parse_target
from trustwatch.tools.embedded import run_embedded
from trustwatch.v1 import messages_pb2 as pb

SUITE = {"name": "dl", "tasks": [{"task": "truthfulness/external", "limit": 6}, {"task": "safety/misuse", "limit": 4}]}
POISON = pb.ERROR_KIND_POISON


def completion(job: pb.PromptJob, text: str = "I'm sorry, I can't help with that.") -> pb.Completion:
    return pb.Completion(
        ref=job.ref,
        prompt=job.prompt,
        text=text,
        record_json=job.record_json,
    )


def drain(workers: Sequence) -> None:
    while sum(w.run_once(timeout=0) for w in workers):
        pass


@pytest.fixture
def plan(data_dir) -> Plan:
    return plan_run(parse_suite(SUITE), parse_target("vllm:m"), data_dir, run_id="dl-1")


def test_poison_completions_end_as_poison_judgments_and_the_run_completes(tmp_path, plan):
    bus, topics = MemoryBus(), Topics()
    store = Store(f"sqlite:///{tmp_path}/r.db")
    metrics = ServiceMetrics(CollectorRegistry())
    agg = Aggregator(store, metrics, topics)
    publish(plan, bus, topics)  # no store: the aggregator learns the run and its plan from the events
    undecodable, unknown_task = plan.jobs[1], plan.jobs[7]
    producer = bus.producer()
    for job in plan.jobs:
        if job is undecodable:
            # bytes that do not decode, keyed by the job id as every producer keys completions
            producer.produce(topics.completions, b"\xff\xfe not a completion", job.ref.job_id.encode())
        elif job is unknown_task:
            bad = completion(job)
            bad.ref.task = "safety/no_such_task"  # the dispatcher cannot judge it: dead-lettered
            producer.produce(topics.completions, bad.SerializeToString(), job.ref.job_id.encode())
        else:
            producer.produce(topics.completions, completion(job).SerializeToString(), job.ref.job_id.encode())
    producer.flush()
    workers = [
        dispatcher_worker(bus, topics, LocalEvaluators(), metrics),
        *aggregator_workers(bus, topics, agg, metrics),
    ]
    drain(workers)
    agg.refresh()

    assert len(bus.messages(topics.dlq)) == 2
    letters = store.dead_letters()
    assert {(d.service, d.job_id, d.run_id) for d in letters} == {
        ("dispatcher", undecodable.ref.job_id, plan.run_id),  # from the key, run from the plan
        ("dispatcher", unknown_task.ref.job_id, plan.run_id),  # from the payload
    }
    assert all(d.payload for d in letters)
    poison = {r.job_id: r for r in store.judgments(plan.run_id) if r.error_kind == POISON}
    assert set(poison) == {undecodable.ref.job_id, unknown_task.ref.job_id}
    for job_id, row in poison.items():
        assert row.error.startswith("dead-lettered by dispatcher: ") and not row.valid and row.label == "error"
        assert row.evaluator == plan.evaluators[job_id][0] and row.target == "m"
    assert "undecodable message" in poison[undecodable.ref.job_id].error
    assert "no_such_task" in poison[unknown_task.ref.job_id].error
    # The record: from the payload where it decodes, else from the plan.
    for job in (undecodable, unknown_task):
        assert json.loads(poison[job.ref.job_id].record_json) == json.loads(job.record_json)
    assert store.judgment_count(plan.run_id) == plan.expected_judgments == 10
    assert store.is_complete(plan.run_id) and store.run(plan.run_id).completed_unix_ms is not None
    report = agg.report(plan.run_id)
    assert report.complete and report.n_missing == 0 and report.missing == []
    assert report.to_json()["n_missing"] == 0


def test_a_dead_letter_before_the_plan_poisons_its_pairs_once_the_plan_is_stored(tmp_path, plan):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    topics = Topics()
    agg = Aggregator(store, ServiceMetrics(CollectorRegistry()), topics)
    job = plan.jobs[0]
    dl = pb.DeadLetter(
        source_topic=topics.jobs("m"),
        partition=0,
        offset=3,
        key=job.ref.job_id.encode(),
        payload=job.SerializeToString(),
        reason="job x is for target 'other'",
        service="generator",
        created_unix_ms=1,
    )
    agg.handle_dead_letters([dl])
    agg.handle_dead_letters([dl])  # redelivered: stored once
    agg.refresh()
    (stored,) = store.dead_letters()
    assert (stored.run_id, stored.job_id, stored.evaluator) == (plan.run_id, job.ref.job_id, None)
    assert store.judgments(plan.run_id) == []  # no plan yet: nothing to poison
    # The run's events arrive: the plan is stored and the dead-lettered job's pair is poisoned.
    planned = [run_event(plan, pb.RunEvent.STARTED), *plan_events(plan)]
    agg.handle_run_events(planned)
    agg.refresh()
    (row,) = store.judgments(plan.run_id)
    assert (row.job_id, row.error_kind, row.error) == (
        job.ref.job_id,
        POISON,
        "dead-lettered by generator: job x is for target 'other'",
    )
    assert store.missing_count(plan.run_id) == plan.expected_judgments - 1
    # A judgment's dead letter poisons only its evaluator's pair.
    other = plan.jobs[2]
    j = pb.Judgment(
        ref=pb.JobRef(job_id=other.ref.job_id, run_id=plan.run_id, task=other.ref.task), evaluator="some_other_judge"
    )
    agg.handle_dead_letters(
        [
            pb.DeadLetter(
                source_topic=topics.judgments,
                offset=9,
                key=other.ref.job_id.encode(),
                payload=j.SerializeToString(),
                reason="cannot be processed: DataError",
                service="aggregator",
            )
        ]
    )
    assert [r.job_id for r in store.judgments(plan.run_id)] == [job.ref.job_id]
    # A replayed dead letter that now succeeds replaces the poison row.
    good = pb.Judgment(
        ref=job.ref,
        evaluator=plan.evaluators[job.ref.job_id][0],
        label="SUPPORT",
        valid=True,
        record_json=job.record_json,
    )
    store.mark_replayed([stored.id])
    agg.handle_judgments([good])
    agg.refresh()
    (row,) = store.judgments(plan.run_id)
    assert (row.label, row.error_kind, row.error) == ("SUPPORT", 0, "")


def test_a_dead_letter_of_the_dead_letter_topic_that_fails_again_is_not_dead_lettered_again(tmp_path, monkeypatch):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    topics = Topics()
    agg = Aggregator(store, ServiceMetrics(CollectorRegistry()), topics)

    def broken(rows):
        raise ValueError("a value the database refuses")

    monkeypatch.setattr(store, "store_dead_letters", broken)
    nested = pb.DeadLetter(source_topic=topics.dlq, payload=b"x", reason="r", service="aggregator-dlq")
    assert len(agg.handle_dead_letters([nested])) == 1  # logged and dropped: no loop
    first = pb.DeadLetter(source_topic=topics.completions, payload=b"x", reason="r", service="dispatcher")
    with pytest.raises(ValueError):  # the runtime finds it and dead-letters it once
        agg.handle_dead_letters([first])

    def down(rows):
        raise sa.exc.OperationalError("INSERT", {}, ConnectionError("database down"))

    monkeypatch.setattr(store, "store_dead_letters", down)
    with pytest.raises(sa.exc.OperationalError):  # a transient fault is retried, never dropped
        agg.handle_dead_letters([nested])


class _RaisesOn(EvaluatorClient):
    """The local evaluators, except that judging a reply containing ``marker`` raises (a poison)."""

    def __init__(self, marker: str) -> None:
        self.inner, self.marker = LocalEvaluators(), marker

    def evaluate(self, evaluator: str, items: Sequence[EvalItem]) -> list[Verdict]:
        if any(self.marker in it.prompt for it in items):
            raise RuntimeError("this record cannot be judged")
        return self.inner.evaluate(evaluator, items)


def test_embedded_a_completion_that_cannot_be_judged_is_counted_and_the_run_completes(tmp_path, data_dir):
    db = f"sqlite:///{tmp_path}/e.db"
    suite = parse_suite(SUITE)
    plan = plan_run(suite, parse_target("vllm:fake"), data_dir)
    marker = plan.jobs[8].prompt  # one misuse prompt
    (report,) = run_embedded(
        suite,
        [parse_target("vllm:fake")],
        data_dir,
        db,
        lambda t: ScriptedBackend(),
        evaluators=_RaisesOn(marker),
        progress=lambda s: None,
    )
    store = Store(db)
    rows = store.judgments(report.run_id)
    poison = [r for r in rows if r.error_kind == POISON]
    assert len(poison) == 1 and poison[0].item_id == plan.jobs[8].ref.item_id
    assert "this record cannot be judged" in poison[0].error
    assert len(rows) == 10 and report.complete and store.is_complete(report.run_id)
    assert [d.service for d in store.dead_letters(run_id=report.run_id)] == ["dispatcher"]


@pytest.mark.slow
def test_over_real_kafka_and_postgresql_a_poison_completion_completes_its_run(kafka_broker, postgres_url, data_dir):
    """The distributed path: plan events, completions and dead letters through a real broker (keys,
    partitions, consumer groups), dead letters and poison rows in PostgreSQL."""
    with own_postgres_database(postgres_url) as url:
        store = Store(url)
        try:
            _poison_completion_over_kafka(kafka_broker, store, data_dir)
        finally:
            store.close()


def _poison_completion_over_kafka(kafka_broker: str, store: Store, data_dir) -> None:
    topics = Topics(prefix=f"dl{uuid.uuid4().hex[:8]}")
    plan = plan_run(parse_suite(SUITE), parse_target("vllm:m"), data_dir, run_id=f"dl-kafka-{uuid.uuid4().hex[:6]}")
    bus = kafka_bus(kafka_broker)
    metrics = ServiceMetrics(CollectorRegistry())
    agg = Aggregator(store, metrics, topics)
    try:
        publish(plan, bus, topics, partitions=2)
        poisoned = plan.jobs[3]
        producer = bus.producer()
        for job in plan.jobs:
            value = b"\xff\xfe garbage" if job is poisoned else completion(job).SerializeToString()
            producer.produce(topics.completions, value, job.ref.job_id.encode())
        producer.flush()
        workers = [
            dispatcher_worker(bus, topics, LocalEvaluators(), metrics),
            *aggregator_workers(bus, topics, agg, metrics),
        ]
        deadline = time.monotonic() + 120
        while not store.is_complete(plan.run_id) and time.monotonic() < deadline:
            for w in workers:
                w.run_once(timeout=0.5)
            agg.refresh()
        for w in workers:
            w.close()
    finally:
        bus.close()
    assert store.is_complete(plan.run_id), f"missing: {store.missing_pairs(plan.run_id)}"
    (row,) = [r for r in store.judgments(plan.run_id) if r.error_kind == POISON]
    assert row.job_id == poisoned.ref.job_id and row.error.startswith(
        "dead-lettered by dispatcher: undecodable message"
    )
    assert json.loads(row.record_json) == json.loads(poisoned.record_json)
    (dl,) = store.dead_letters(run_id=plan.run_id)
    assert dl.payload == b"\xff\xfe garbage" and dl.key == poisoned.ref.job_id.encode()

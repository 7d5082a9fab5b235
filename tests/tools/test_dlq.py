"""`trustwatch dlq list|replay`: dead letters the aggregator stored are listed from the database, and a
replay sends the payload back to its source topic with its key (memory bus and real Kafka); a replayed
completion that now goes through replaces its POISON judgment."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from trustwatch import cli
from trustwatch.aggregator.service import Aggregator, aggregator_workers
from trustwatch.benchmark.evaluators.base import EvalItem, Verdict
from trustwatch.judge.client import EvaluatorClient, LocalEvaluators
from trustwatch.judge.dispatcher import dispatcher_worker
from trustwatch.platform.bus import MemoryBus, Topics, kafka_bus
from trustwatch.platform.store import Store
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.scheduler.core import plan_run
from trustwatch.scheduler.service import publish
from trustwatch.scheduler.suite import parse_suite, parse_target
from trustwatch.tools import dlq
from trustwatch.v1 import messages_pb2 as pb

SUITE = {"name": "dlq", "tasks": [{"task": "safety/misuse", "limit": 3}]}


class _Down(EvaluatorClient):
    """An evaluator that raises on every batch: each completion ends on the dead-letter topic."""

    def evaluate(self, evaluator: str, items: Sequence[EvalItem]) -> list[Verdict]:
        raise RuntimeError("refusal judge is misconfigured")


def completion(job: pb.PromptJob) -> pb.Completion:
    return pb.Completion(
        job_id=job.job_id,
        run_id=job.run_id,
        task=job.task,
        item_id=job.item_id,
        sample=job.sample,
        target=job.target.name,
        prompt=job.prompt,
        text="I'm sorry, but I can't help with that.",
        record_json=job.record_json,
    )


def drain(workers) -> None:
    while sum(w.run_once(timeout=0) for w in workers):
        pass


def poisoned_run(tmp_path, data_dir):
    """A run whose three completions were dead-lettered by a broken judge (stored, poisoned)."""
    db = f"sqlite:///{tmp_path}/r.db"
    store, bus, topics = Store(db), MemoryBus(), Topics()
    metrics = ServiceMetrics(CollectorRegistry())
    agg = Aggregator(store, metrics, topics)
    plan = plan_run(parse_suite(SUITE), parse_target("vllm:m"), data_dir, run_id="dlq-run")
    publish(plan, bus, topics)
    producer = bus.producer()
    for job in plan.jobs:
        producer.produce(topics.completions, completion(job).SerializeToString(), job.job_id.encode())
    producer.flush()
    drain([dispatcher_worker(bus, topics, _Down(), metrics), *aggregator_workers(bus, topics, agg, metrics)])
    agg.refresh()
    assert store.is_complete(plan.run_id)
    assert {r.error_kind for r in store.judgments(plan.run_id)} == {pb.ERROR_KIND_POISON}
    return db, store, bus, topics, agg, metrics, plan


def test_list_shows_what_the_aggregator_stored(tmp_path, data_dir, capsys):
    db, store, _bus, _topics, _agg, _metrics, plan = poisoned_run(tmp_path, data_dir)
    assert cli.main(["dlq", "list", "--db", db]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["id", "created", "service", "source"] and len(lines) == 4
    assert all("dispatcher" in line and "trustwatch.completions[0]@" in line for line in lines[1:])
    assert "refusal judge is misconfigured" in out and plan.jobs[0].job_id in out
    assert cli.main(["dlq", "list", "--db", db, "--run", plan.run_id, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["job_id"] for d in listed] == [j.job_id for j in plan.jobs]
    assert all(d["payload_bytes"] > 0 and d["replayed_unix_ms"] is None for d in listed)
    assert "payload" not in listed[0]
    assert cli.main(["dlq", "list", "--db", db, "--service", "generator"]) == 0
    assert capsys.readouterr().out.strip() == "no dead letters"


def test_replay_sends_payloads_back_and_a_success_replaces_the_poison_rows(tmp_path, data_dir):
    db, store, bus, topics, agg, metrics, plan = poisoned_run(tmp_path, data_dir)
    letters = store.dead_letters()
    first = letters[0]
    before = len(bus.messages(topics.completions))
    # One by id, over the given bus: the payload and key land on the source topic unchanged.
    args = cli.build_parser().parse_args(["dlq", "replay", "--db", db, "--id", str(first.id)])
    assert dlq.cmd_dlq(args, bus=bus) == 0
    sent = bus.messages(topics.completions)[before:]
    assert [(m.key, m.value) for m in sent] == [(first.key, first.payload)]
    assert store.dead_letters(ids=[first.id])[0].replayed_unix_ms is not None
    # Replaying it again needs --force; --run skips what was replayed.
    with pytest.raises(dlq.DlqError, match="replayed already; pass --force"):
        dlq.select(store, ids=[first.id])
    assert [d.id for d in dlq.select(store, ids=[first.id], force=True)] == [first.id]
    with pytest.raises(dlq.DlqError, match="no dead letter with id 999"):
        dlq.select(store, ids=[999])
    assert [d.id for d in dlq.select(store, run_id=plan.run_id)] == [d.id for d in letters[1:]]
    # The judge is fixed: the replayed completion is judged, its judgment replaces the poison row.
    drain([dispatcher_worker(bus, topics, LocalEvaluators(), metrics), *aggregator_workers(bus, topics, agg, metrics)])
    agg.refresh()
    rows = {r.job_id: r for r in store.judgments(plan.run_id)}
    assert rows[first.job_id].error_kind == 0 and rows[first.job_id].label == "refusal"
    assert {rows[d.job_id].error_kind for d in letters[1:]} == {pb.ERROR_KIND_POISON}
    assert store.is_complete(plan.run_id) and store.judgment_count(plan.run_id) == 3
    # The rest with --all.
    args = cli.build_parser().parse_args(["dlq", "replay", "--db", db, "--all"])
    assert dlq.cmd_dlq(args, bus=bus) == 0
    assert len(bus.messages(topics.completions)) == before + 3
    assert dlq.select(store, all_=True) == []


def test_replay_needs_a_choice(tmp_path, capsys):
    db = f"sqlite:///{tmp_path}/e.db"
    with pytest.raises(SystemExit):
        cli.main(["dlq", "replay", "--db", db])
    assert "one of the arguments --id --run --all is required" in capsys.readouterr().err
    assert cli.main(["dlq", "replay", "--db", db, "--all"]) == 0
    assert "nothing to replay" in capsys.readouterr().out


@pytest.mark.slow
def test_replay_over_real_kafka(tmp_path, data_dir, kafka_broker, capsys):
    db, store, _bus, _topics, _agg, _metrics, plan = poisoned_run(tmp_path, data_dir)
    letters = store.dead_letters()
    # The stored dead letters name the memory bus's topics; send them to fresh Kafka topics instead.
    topic = f"dlq-replay-{uuid.uuid4().hex[:8]}"
    with store.engine.begin() as conn:
        from trustwatch.platform.store import dead_letters

        conn.execute(dead_letters.update().values(source_topic=topic))
    bus = kafka_bus(kafka_broker)
    try:
        bus.create_topics([topic])
        assert cli.main(["dlq", "replay", "--db", db, "--run", plan.run_id, "--bootstrap", kafka_broker]) == 0
        assert f"replayed 3 dead letter(s) to {topic}" in capsys.readouterr().out
        consumer = bus.consumer([topic], f"g-{uuid.uuid4().hex[:8]}")
        got: list = []
        for _ in range(30):
            got.extend(consumer.poll(1.0, 10))
            if len(got) >= 3:
                break
        consumer.close()
    finally:
        bus.close()
    assert sorted((m.key, m.value) for m in got) == sorted((d.key, d.payload) for d in letters)
    assert all(d.replayed_unix_ms for d in store.dead_letters())

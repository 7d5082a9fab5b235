"""`trustwatch dlq list|replay`: dead letters the aggregator stored are listed from the database, and a
replay sends the payload back to its source topic with its key (memory bus and real Kafka); a replayed
completion that now goes through replaces its POISON judgment. An embedded run's dead letters (``--embedded``)
go through the in-process pipeline's handlers instead: generated, judged, stored."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from trustwatch import cli
from trustwatch.aggregator.service import Aggregator, aggregator_workers
from trustwatch.benchmark.evaluators.base import EvalItem, Verdict
from trustwatch.generator.backends.base import Backend, GenRequest, GenResult, Stream
from trustwatch.judge.client import EvaluatorClient, LocalEvaluators
from trustwatch.judge.dispatcher import dispatcher_worker
from trustwatch.platform.bus import MemoryBus, Topics, kafka_bus
from trustwatch.platform.messages import now_ms
from trustwatch.platform.store import Store
from trustwatch.platform.targets import TargetSpec
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.scheduler.core import plan_run
from trustwatch.scheduler.service import publish
from trustwatch.scheduler.suite import parse_suite, parse_target
from trustwatch.tools import dlq
from trustwatch.tools.embedded import run_embedded
from trustwatch.v1 import messages_pb2 as pb

SUITE = {"name": "dlq", "tasks": [{"task": "safety/misuse", "limit": 3}]}


class _Down(EvaluatorClient):
    """An evaluator that raises on every batch: each completion ends on the dead-letter topic."""

    def evaluate(self, evaluator: str, items: Sequence[EvalItem]) -> list[Verdict]:
        raise RuntimeError("refusal judge is misconfigured")


def completion(job: pb.PromptJob) -> pb.Completion:
    return pb.Completion(
        ref=job.ref,
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
        producer.produce(topics.completions, completion(job).SerializeToString(), job.ref.job_id.encode())
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
    assert "refusal judge is misconfigured" in out and plan.jobs[0].ref.job_id in out
    assert cli.main(["dlq", "list", "--db", db, "--run", plan.run_id, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["job_id"] for d in listed] == [j.ref.job_id for j in plan.jobs]
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


# -- an embedded run's dead letters, replayed in this process ----------------------------------------

EMBEDDED_SUITE = {"name": "dlq-embedded", "tasks": [{"task": "safety/misuse", "limit": 6}]}
REFUSAL = "I'm sorry, but I can't help with that."


class _Backend(Backend):
    """Refuses every prompt, in streaming mode (the embedded generator's); while ``broken`` names job
    ids, submitting one of them raises, as vLLM's engine does for a prompt longer than its context,
    so the generator dead-letters that job."""

    name = "fake"
    preferred_batch = 3

    def __init__(self, broken: set[str]) -> None:
        self.broken = set(broken)
        self.seen: list[str] = []

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        raise AssertionError("the embedded generator streams")

    def stream(self) -> Stream:
        return _Stream(self)


class _Stream(Stream):
    capacity = 8

    def __init__(self, backend: _Backend) -> None:
        self.backend = backend
        self.ready: list[GenResult] = []

    def submit(self, request: GenRequest) -> None:
        job_id = request.request_id.split("#", 1)[0]
        if job_id in self.backend.broken:
            raise ValueError("prompt is longer than the model's context (max_model_len)")
        self.backend.seen.append(job_id)
        self.ready.append(GenResult(request.request_id, text=REFUSAL, completion_tokens=9))

    def results(self, timeout: float = 0.0) -> list[GenResult]:
        out, self.ready = self.ready, []
        return out

    @property
    def in_flight(self) -> int:
        return len(self.ready)


class _Judges(LocalEvaluators):
    """The local judges, but a batch holding a completion of a ``broken`` job raises, so the
    dispatcher dead-letters that completion."""

    def __init__(self, broken: set[str]) -> None:
        super().__init__()
        self.broken = set(broken)

    def evaluate(self, evaluator: str, items: Sequence[EvalItem]) -> list[Verdict]:
        if self.broken & {i.job_id for i in items}:
            raise RuntimeError("judge template fails on this record")
        return super().evaluate(evaluator, items)


def test_replay_of_an_embedded_run_feeds_the_dead_letters_through_the_in_process_pipeline(tmp_path, data_dir, capsys):
    db = f"sqlite:///{tmp_path}/e.db"
    suite, target, run_id = parse_suite(EMBEDDED_SUITE), parse_target("vllm:m"), "dlq-embedded"
    job_ids = [j.ref.job_id for j in plan_run(suite, target, data_dir, run_id=run_id).jobs]
    bad_job, bad_completion = job_ids[1], job_ids[4]
    # The embedded run: one job the back-end chokes on, one completion the judge chokes on.
    backend = _Backend({bad_job})
    (report,) = run_embedded(
        suite,
        [target],
        data_dir,
        db,
        lambda t: backend,
        run_id=run_id,
        evaluators=_Judges({bad_completion}),
        progress=lambda m: None,
    )
    assert report.run_id == run_id
    store = Store(db)
    poisoned = {r.job_id for r in store.judgments(run_id) if r.error_kind == pb.ERROR_KIND_POISON}
    assert poisoned == {bad_job, bad_completion}
    assert store.is_complete(run_id)
    letters = {d.job_id: d for d in store.dead_letters(run_id=run_id)}
    assert {job: d.service for job, d in letters.items()} == {bad_job: "generator", bad_completion: "dispatcher"}
    job_letter, completion_letter = letters[bad_job], letters[bad_completion]
    assert job_letter.source_topic == Topics().jobs(target.name)

    # The judge is fixed: the completion's dead letter replayed through the CLI, in this process.
    assert cli.main(["dlq", "replay", "--db", db, "--id", str(completion_letter.id), "--embedded"]) == 0
    assert f"replayed 1 dead letter(s) in this process: ids {completion_letter.id}" in capsys.readouterr().out
    rows = {r.job_id: r for r in store.judgments(run_id)}
    assert rows[completion_letter.job_id].error_kind == 0 and rows[completion_letter.job_id].label == "refusal"
    assert rows[job_letter.job_id].error_kind == pb.ERROR_KIND_POISON

    # The back-end still chokes: the job's replay fails again, is dead-lettered anew, stays POISON.
    seen: list[TargetSpec] = []

    def factory(spec: TargetSpec) -> Backend:
        seen.append(spec)
        return backend

    assert backend.broken == {job_letter.job_id}
    ids, again = dlq.replay_embedded(store, [job_letter], LocalEvaluators(), factory)
    assert ids == [job_letter.id] and len(again) == 1
    (anew,) = store.dead_letters(ids=again)
    assert anew.job_id == job_letter.job_id and anew.service == "generator" and anew.payload == job_letter.payload
    assert {r.job_id: r.error_kind for r in store.judgments(run_id)}[job_letter.job_id] == pb.ERROR_KIND_POISON
    # the target came from the run's manifest
    assert [(s.name, s.backend, s.model) for s in seen] == [(target.name, "vllm", "m")]

    # Fixed: the new dead letter's replay generates and judges the job; its success replaces the POISON row.
    backend.broken = set()
    ids, again = dlq.replay_embedded(store, dlq.select(store, run_id=run_id), LocalEvaluators(), factory)
    assert ids == [anew.id] and again == []
    assert backend.seen[-1] == job_letter.job_id
    rows = {r.job_id: r for r in store.judgments(run_id)}
    assert all(r.error_kind == 0 and r.label == "refusal" for r in rows.values()), rows
    assert len(store.judgments(run_id)) == len(job_ids) and store.is_complete(run_id)
    assert all(d.replayed_unix_ms for d in store.dead_letters(run_id=run_id))
    assert dlq.select(store, all_=True) == []


def test_embedded_replay_refuses_dead_letters_of_other_topics(tmp_path, data_dir):
    db, store, *_ = poisoned_run(tmp_path, data_dir)
    with store.engine.begin() as conn:
        from trustwatch.platform.store import dead_letters

        conn.execute(dead_letters.update().values(source_topic="s1.completions"))
    with pytest.raises(dlq.DlqError, match="s1.completions: not a topic of the embedded pipeline"):
        dlq.replay_embedded(store, store.dead_letters(), LocalEvaluators(), lambda t: _Backend(set()))
    assert not any(d.replayed_unix_ms for d in store.dead_letters())


def test_replay_never_sends_a_payload_retention_cleared(tmp_path, data_dir):
    _db, store, bus, topics, _agg, _metrics, plan = poisoned_run(tmp_path, data_dir)
    letters = store.dead_letters()
    dlq.replay(store, bus, letters[:1])  # replayed, so retention may clear its payload
    later = now_ms() + 2 * 86_400_000
    assert store.prune(1, now=later).dead_letter_payloads == 1
    with pytest.raises(dlq.DlqError, match="no payload left"):
        dlq.select(store, ids=[letters[0].id], force=True)
    assert [d.id for d in dlq.select(store, all_=True, force=True)] == [d.id for d in letters[1:]]

"""publish(): STARTED, the plan as PLANNED events (every expected (job, evaluator) pair, in chunks
far below Kafka's message limit), the jobs, then JOBS_PUBLISHED; also when resuming. The deadline
is in the manifest."""

from __future__ import annotations

import json

from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.messages import decode_run_event, judgment_id
from trustwatch.platform.store import Store
from trustwatch.scheduler.core import plan_events, plan_run
from trustwatch.scheduler.service import publish
from trustwatch.scheduler.suite import parse_suite, parse_target
from trustwatch.v1 import messages_pb2 as pb

SUITE = {
    "name": "t",
    "seed": 7,
    "tasks": [{"task": "truthfulness/external", "limit": 5}, {"task": "safety/misuse", "limit": 3}],
}


def kinds(bus: MemoryBus, topics: Topics) -> list[int]:
    return [decode_run_event(m.value).kind for m in bus.messages(topics.runs)]


def test_publish_sends_the_plan_between_started_and_the_jobs(data_dir):
    plan = plan_run(parse_suite(SUITE), parse_target("vllm:m"), data_dir, deadline_s=3600)
    assert plan.evaluators_per_job == {j.ref.job_id: 1 for j in plan.jobs}
    assert {plan.evaluators[j.ref.job_id] for j in plan.jobs} == {("fact_check",), ("refusal",)}
    m = plan.manifest
    assert m["deadline_unix_ms"] == m["created_unix_ms"] + 3_600_000 and m["completion"] == "planned_pairs"
    assert plan_run(parse_suite(SUITE), parse_target("vllm:m"), data_dir).manifest["deadline_unix_ms"] == 0

    bus, topics, store = MemoryBus(), Topics(), Store("sqlite:///:memory:")
    assert publish(plan, bus, topics, store) == 8
    events = [decode_run_event(m.value) for m in bus.messages(topics.runs)]
    assert [e.kind for e in events] == [pb.RunEvent.STARTED, pb.RunEvent.PLANNED, pb.RunEvent.JOBS_PUBLISHED]
    planned = events[1]
    assert planned.manifest_json == "" and planned.deadline_unix_ms == m["deadline_unix_ms"]
    assert [(p.job_id, p.evaluator) for p in planned.planned] == [
        (j.ref.job_id, plan.evaluators[j.ref.job_id][0]) for j in plan.jobs
    ]
    assert json.loads(events[0].manifest_json)["deadline_unix_ms"] == m["deadline_unix_ms"]
    # The store given to publish holds the plan too, and the run is exact from the start.
    assert store.planned_count(plan.run_id) == plan.expected_judgments == 8
    assert store.missing_count(plan.run_id) == 8 and not store.is_complete(plan.run_id)
    # Resuming sends the plan again (idempotent), with only the unfinished jobs.
    first = plan.jobs[0]
    store.store_judgments(
        [
            pb.Judgment(
                ref=pb.JobRef(
                    job_id=first.ref.job_id,
                    run_id=plan.run_id,
                    task=first.ref.task,
                    item_id=first.ref.item_id,
                    target="m",
                ),
                evaluator="fact_check",
                label="SUPPORT",
                valid=True,
            )
        ]
    )
    assert publish(plan, bus, topics, store) == 7
    assert kinds(bus, topics)[3:] == [pb.RunEvent.STARTED, pb.RunEvent.PLANNED, pb.RunEvent.JOBS_PUBLISHED]
    assert store.planned_count(plan.run_id) == 8 and store.missing_count(plan.run_id) == 7


def test_plan_chunks_stay_far_below_the_message_limit(data_dir):
    plan = plan_run(parse_suite({**SUITE, "samples": 300}), parse_target("vllm:m"), data_dir, run_id="r" * 200)
    assert plan.expected_judgments == 2400
    events = plan_events(plan)
    sizes = [len(e.SerializeToString()) for e in events]
    assert len(events) >= 3 and max(sizes) < 400 * 1024
    assert all(len(e.planned) <= 1000 for e in events)
    got = [judgment_id(p.job_id, p.evaluator) for e in events for p in e.planned]
    assert got == [judgment_id(p.job_id, p.evaluator) for p in plan.pairs()] and len(set(got)) == 2400
    # A small chunk size splits by count.
    assert [len(e.planned) for e in plan_events(plan, chunk=1000, chunk_bytes=10**9)] == [1000, 1000, 400]

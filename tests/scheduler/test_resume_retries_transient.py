"""Issue 8: re-running a run (the default, no flag) publishes exactly its jobs that are not settled:
those without all their judgments, and those with a TRANSIENT error judgment."""

from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.store import Store
from trustwatch.scheduler.core import plan_run
from trustwatch.scheduler.service import publish
from trustwatch.scheduler.suite import parse_suite, parse_target
from trustwatch.v1 import messages_pb2 as pb

SUITE = {"name": "t", "seed": 7, "tasks": [{"task": "truthfulness/external", "limit": 6}]}


def test_resubmitting_republishes_transient_errors_only(data_dir):
    plan = plan_run(parse_suite(SUITE), parse_target("vllm:m"), data_dir)
    bus, topics, store = MemoryBus(), Topics(), Store("sqlite:///:memory:")
    publish(plan, bus, topics, store)
    kinds = [pb.ERROR_KIND_UNSPECIFIED, pb.ERROR_KIND_TRANSIENT, pb.ERROR_KIND_FINAL, pb.ERROR_KIND_TRANSIENT]
    stored = [
        pb.Judgment(
            ref=pb.JobRef(job_id=j.ref.job_id, run_id=j.ref.run_id, task=j.ref.task, item_id=j.ref.item_id, target="m"),
            evaluator="fact_check",
            label="error" if k else "SUPPORT",
            valid=not k,
            error="boom" if k else "",
            error_kind=k,
        )
        for j, k in zip(plan.jobs, kinds, strict=False)
    ]
    store.store_judgments(stored)
    before = len(bus.messages(topics.jobs("m")))
    # Jobs 4 and 5 have no judgment; jobs 1 and 3 ended transient: those four are published again.
    assert publish(plan, bus, topics, store) == 4
    again = [pb.PromptJob.FromString(m.value).ref.job_id for m in bus.messages(topics.jobs("m"))[before:]]
    assert again == [plan.jobs[i].ref.job_id for i in (1, 3, 4, 5)]

"""The scheduler's transport: publish a plan's jobs and run events; record the run when a store is given."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from trustwatch.platform.bus.base import Bus, Topics
from trustwatch.scheduler.core import Plan, pending_jobs, plan_events, run_event
from trustwatch.v1 import messages_pb2 as pb

if TYPE_CHECKING:
    from trustwatch.platform.store import Store

log = logging.getLogger(__name__)


def publish(plan: Plan, bus: Bus, topics: Topics, store: Store | None = None, partitions: int = 1) -> int:
    """Publish the jobs of a run that are not complete yet; returns how many were published.

    On the runs topic (keyed by run id, so in order): STARTED, the plan as PLANNED events (every
    expected (job, evaluator) pair, in chunks; the aggregator stores them to decide completion
    exactly), then after the jobs JOBS_PUBLISHED. The plan is sent on every publish, also when
    resuming: storing it is idempotent.

    Re-submitting a run publishes only jobs without all their judgments settled (a transient error
    judgment does not count: its job is retried, see ``Store.done_job_ids``), and storage is
    idempotent on job ids, so a re-submitted run never yields duplicate results.
    """
    jobs = plan.jobs
    if store is not None:
        store.record_run(plan.run_id, plan.target.name, plan.manifest, len(plan.jobs), plan.expected_judgments)
        store.record_plan(plan.run_id, plan.pairs())
        jobs = pending_jobs(plan, store.done_job_ids(plan.run_id, plan.evaluators))
    topic = topics.jobs(plan.target.name)
    bus.create_topics([topic, topics.completions, topics.judgments, topics.runs, topics.dlq], partitions)
    producer = bus.producer()
    key = plan.run_id.encode()
    producer.produce(topics.runs, run_event(plan, pb.RunEvent.STARTED).SerializeToString(), key)
    for event in plan_events(plan):
        producer.produce(topics.runs, event.SerializeToString(), key)
    for job in jobs:
        producer.produce(topic, job.SerializeToString(), job.ref.job_id.encode())
    producer.produce(topics.runs, run_event(plan, pb.RunEvent.JOBS_PUBLISHED).SerializeToString(), key)
    producer.flush()
    log.info("run %s: published %d of %d jobs to %s", plan.run_id, len(jobs), len(plan.jobs), topic)
    return len(jobs)

"""The aggregator stores a run's plan from its PLANNED events, unless the store already held the whole
plan at the first of them (a scheduler with the database stores it before publishing): storing it again
is idempotent, so skipping must change nothing but the work done."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from trustwatch.aggregator.service import Aggregator
from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.messages import decode_run_event
from trustwatch.platform.store import Store
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.scheduler.core import plan_run
from trustwatch.scheduler.service import publish
from trustwatch.scheduler.suite import parse_suite, parse_target
from trustwatch.v1 import messages_pb2 as pb

SUITE = {"name": "t", "seed": 7, "tasks": [{"task": "truthfulness/external", "limit": 5}]}


class CountingStore(Store):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.plans_recorded = 0

    def record_plan(self, run_id, pairs):  # type: ignore[no-untyped-def]
        self.plans_recorded += 1
        return super().record_plan(run_id, pairs)


def events_of(plan, store: Store | None) -> list[pb.RunEvent]:
    bus, topics = MemoryBus(), Topics()
    publish(plan, bus, topics, store)
    return [decode_run_event(m.value) for m in bus.messages(topics.runs)]


def test_plan_stored_by_the_scheduler_is_not_stored_again(tmp_path, data_dir):
    plan = plan_run(parse_suite(SUITE), parse_target("vllm:m"), data_dir)
    store = CountingStore(f"sqlite:///{tmp_path}/a.db")
    events = events_of(plan, store)
    assert store.plans_recorded == 1  # the scheduler's
    agg = Aggregator(store, ServiceMetrics(CollectorRegistry()))
    agg.handle_run_events(events)
    assert store.plans_recorded == 1 and store.planned_count(plan.run_id) == plan.expected_judgments == 5
    assert store.missing_count(plan.run_id) == 5
    agg.handle_run_events(events)  # redelivered: remembered, not even counted again
    assert store.plans_recorded == 1


def test_plan_is_stored_from_events_when_the_scheduler_has_no_database(tmp_path, data_dir):
    plan = plan_run(parse_suite(SUITE), parse_target("vllm:m"), data_dir)
    events = events_of(plan, None)
    planned = [e for e in events if e.kind == pb.RunEvent.PLANNED]
    store = CountingStore(f"sqlite:///{tmp_path}/b.db")
    agg = Aggregator(store, ServiceMetrics(CollectorRegistry()))
    agg.handle_run_events(events)
    assert store.plans_recorded == len(planned) and store.planned_count(plan.run_id) == 5
    assert store.missing_count(plan.run_id) == 5 and not store.is_complete(plan.run_id)


def test_a_plan_partly_held_at_the_first_event_is_stored_from_every_event(tmp_path, data_dir):
    plan = plan_run(parse_suite(SUITE), parse_target("vllm:m"), data_dir)
    events = events_of(plan, None)
    store = CountingStore(f"sqlite:///{tmp_path}/c.db")
    store.record_run(plan.run_id, "m", plan.manifest, len(plan.jobs), plan.expected_judgments)
    store.record_plan(plan.run_id, list(plan.pairs())[:2])
    agg = Aggregator(store, ServiceMetrics(CollectorRegistry()))
    agg.handle_run_events(events)
    assert store.planned_count(plan.run_id) == 5 and store.plans_recorded > 1

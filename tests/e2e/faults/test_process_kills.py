"""Scenario 2: processes die. During a run, one service at a time (generator, dispatcher, judge
server, aggregator, in a seeded order: each once, then again, at most 8 kills) gets SIGKILL and is
started again at once, 3 s after the previous restart was back at work; then the aggregator is
killed the moment the run's last judgment is stored, before (or while) it marks the run complete; then
the scheduler is killed mid-publish and re-run. Each time the run must end complete, with the stored
set of (job, evaluator) equal to the plan, no duplicates and no error (the endpoint injects none).

The endpoint answers in 0.6 s and the generator keeps 2 requests in flight, so a 200-prompt run takes
about 60 s of generation: long enough for several kills to land mid-run. A 40-prompt run first warms
the stack up (topics created, consumer groups formed), so the kills hit a pipeline at work.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.e2e.faults.harness import ROOT, Progress, Stack, audit, record, scenario_stack
from tests.harness.kafka import KafkaBroker
from tests.harness.postgres import PostgresCluster
from trustwatch.platform.bus import Topics, kafka_bus
from trustwatch.tools.fake_endpoint import EndpointConfig

pytestmark = pytest.mark.slow

SCENARIO = "2 kill -9"
SERVICES = ["generator", "dispatcher", "judge", "aggregator"]
KILL_EVERY_S = 3.0
MAX_KILLS = 8


@pytest.fixture(scope="module")
def stack(fault_broker: KafkaBroker, fault_pg: PostgresCluster, data_dir) -> Iterator[Stack]:
    config = EndpointConfig(seed=2, latency="constant", median_s=0.6)
    with scenario_stack(fault_broker, fault_pg, data_dir, "s2", "s2_kills", config, concurrency=2) as sc:
        yield sc.stack


def test_random_kills_then_aggregator_at_completion(stack: Stack) -> None:
    order = random.Random(8).sample(SERVICES, len(SERVICES))  # each service once, then again
    began = time.monotonic()
    run_id = stack.schedule()["run_id"]
    plan = stack.plan(run_id)
    kills: list[tuple[str, float]] = []  # (service, when it was started again)
    with Progress(stack.db_url, run_id, every=0.05) as progress:
        # random kills from the first settled judgment until 85% of the run is settled
        progress.wait_settled(1, timeout=180)
        print(
            f"\n[faults] s2 first judgment settled {time.monotonic() - began:.1f} s after publishing", file=sys.stderr
        )
        while progress.settled < 0.85 * len(plan) and len(kills) < MAX_KILLS:
            time.sleep(KILL_EVERY_S)
            if progress.settled >= 0.85 * len(plan):
                break
            name = order[len(kills) % len(order)]
            stack.restart(name)
            at = time.monotonic()
            kills.append((name, at))
            # the next kill waits until this restart is back at work (a process takes 5-15 s to start
            # on a loaded 2-core machine: killing faster than that would only measure start-up)
            settled = progress.settled
            while progress.settled <= settled and progress.settled < len(plan):
                assert time.monotonic() - at < 120, f"no progress for 120 s after restarting {name}"
                time.sleep(0.1)
            print(
                f"[faults] s2 killed {name} at {settled} settled; resumed after {time.monotonic() - at:.1f} s",
                file=sys.stderr,
            )
        # the aggregator killed right at completion: as soon as every planned pair is settled
        progress.wait_settled(len(plan), timeout=240)
        stack.kill("aggregator")
        marked_before_kill = stack.store.run(run_id).completed_unix_ms is not None
        stack.start("aggregator")
        restarted = time.monotonic()
        stack.wait_complete(run_id, timeout=120)
        marked_after = time.monotonic() - restarted
        finish = time.monotonic() - began
        resumed = [progress.resumed_after(t) for _, t in kills]
    audited = audit(stack.store, run_id, plan)
    measured = [r for r in resumed if r is not None]
    record(
        SCENARIO,
        f"{len(kills)} random kill -9 + restart, {KILL_EVERY_S:g} s apart ({', '.join(n for n, _ in kills)})",
        audited,
        max(measured) if measured else None,
        finish,
        note=f"resumed: worst of {len(measured)} restarts; median {sorted(measured)[len(measured) // 2]:.1f} s"
        if measured
        else "",
    )
    same, duplicates, errors, _ = record(
        SCENARIO,
        "aggregator kill -9 at the last judgment, restarted",
        audited,
        round(marked_after, 1),
        finish,
        note=(
            "resumed: restart to run marked complete; "
            + ("it was already marked when killed" if marked_before_kill else "it was not marked yet when killed")
        ),
    )
    assert len(kills) >= 3, f"only {len(kills)} kills landed during the run"
    assert same and duplicates == 0 and errors == {}
    assert stack.store.is_complete(run_id)


def test_scheduler_killed_mid_publish_then_rerun(stack: Stack) -> None:
    known = {r.run_id for r in stack.store.runs()}
    began = time.monotonic()
    proc = subprocess.Popen(
        stack.scheduler_cmd(), env=stack.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    run_id = ""
    try:
        # kill as soon as the run is recorded: the plan and the jobs are being published then
        deadline = time.monotonic() + 120
        while not run_id:
            assert time.monotonic() < deadline and proc.poll() is None, "the scheduler exited before it was killed"
            fresh = [r.run_id for r in stack.store.runs() if r.run_id not in known]
            if fresh:
                run_id = fresh[0]
            else:
                time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    planned_at_kill = stack.store.planned_count(run_id)
    jobs_at_kill = _count_jobs(stack, run_id)
    plan = stack.plan(run_id)
    with Progress(stack.db_url, run_id) as progress:
        rerun_at = time.monotonic()
        again = stack.schedule()
        stack.wait_complete(run_id, timeout=240)
        finish = time.monotonic() - began
        resumed = progress.resumed_after(rerun_at)
    same, duplicates, errors, _ = record(
        SCENARIO,
        "scheduler kill -9 mid-publish, then re-run",
        audit(stack.store, run_id, plan),
        resumed,
        finish,
        note=f"at the kill: {planned_at_kill} of {len(plan)} plan pairs recorded, {jobs_at_kill} jobs on the "
        f"topic; the re-run published {again['published']}",
    )
    assert again["run_id"] == run_id, again  # the incomplete run is resumed, not replaced
    assert jobs_at_kill < len(plan), "the scheduler finished publishing before the kill"
    assert same and duplicates == 0 and errors == {}


def _count_jobs(stack: Stack, run_id: str) -> int:
    """Jobs of the run on its job topic, read from the start by a consumer group of its own."""
    bus = kafka_bus(stack.bootstrap)
    topic = Topics(stack.prefix).jobs("fake")
    consumer = bus.consumer([topic], group_id=f"faults-audit-{time.time_ns()}")
    seen: set[bytes] = set()
    idle = 0
    try:
        while idle < 3:
            batch = consumer.poll(1.0, 1000)
            seen.update(m.key or b"" for m in batch if run_id.encode() in (m.key or b""))
            idle = 0 if batch else idle + 1
    finally:
        consumer.close()
        bus.close()
    return len(seen)

"""Scenario 3: the infrastructure goes away under a running pipeline. One run each: the Kafka broker
stopped (SIGTERM) for 15 s and started again on its data and port; the broker frozen (SIGSTOP) for
15 s, then SIGCONT; PostgreSQL stopped (fast shutdown: clients disconnected) for 10 s and started
again. 15 s is longer than the consumers' session timeout (10 s), so the group is rebuilt as it would
be after a longer outage; the brief's "scaled" durations keep the scenario near a minute per fault.

Every service must survive (no process exits), and the run must end complete with the stored set
equal to the plan, no duplicates and no error. "Resumed" is measured from the moment the fault
ended (broker serving again, SIGCONT, PostgreSQL accepting connections) to the next settled judgment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.faults.harness import Progress, Stack, audit, record, scenario_stack
from tests.harness.kafka import KafkaBroker
from tests.harness.postgres import PostgresCluster
from trustwatch.tools.fake_endpoint import EndpointConfig

pytestmark = pytest.mark.slow

SCENARIO = "3 broker / database"
DOWN_S = 15.0
PG_DOWN_S = 10.0


@pytest.fixture(scope="module")
def stack(fault_broker: KafkaBroker, fault_pg: PostgresCluster, data_dir) -> Iterator[Stack]:
    config = EndpointConfig(seed=3, latency="constant", median_s=0.3)
    with scenario_stack(fault_broker, fault_pg, data_dir, "s3", "s3_infra", config, concurrency=4) as sc:
        yield sc.stack


def _run_with_fault(stack: Stack, injected: str, fault: Callable[[], str]) -> None:
    """Publish a run, inject ``fault`` once a third of it is settled (it returns a note), audit."""
    began = time.monotonic()
    run_id = stack.schedule()["run_id"]
    plan = stack.plan(run_id)
    with Progress(stack.db_url, run_id) as progress:
        progress.wait_settled(len(plan) // 3, timeout=180)
        at_fault = progress.settled
        note = fault()
        ended = time.monotonic()
        stack.wait_complete(run_id, timeout=300)
        finish = time.monotonic() - began
        resumed = progress.resumed_after(ended)
    same, duplicates, errors, _ = record(
        SCENARIO,
        injected,
        audit(stack.store, run_id, plan),
        resumed,
        finish,
        note=f"{at_fault} of {len(plan)} settled at the fault; {note}",
    )
    stack.check_alive()
    assert same and duplicates == 0 and errors == {}


def test_broker_stopped_and_restarted(stack: Stack, fault_broker: KafkaBroker) -> None:
    def fault() -> str:
        fault_broker.halt()
        time.sleep(DOWN_S)
        ready = fault_broker.resume()
        return f"broker served again {ready:.1f} s after its start"

    _run_with_fault(stack, f"Kafka broker stopped {DOWN_S:g} s, restarted", fault)


def test_broker_frozen(stack: Stack, fault_broker: KafkaBroker) -> None:
    def fault() -> str:
        fault_broker.freeze()
        try:
            time.sleep(DOWN_S)
        finally:
            fault_broker.thaw()
        return "SIGSTOP, then SIGCONT"

    _run_with_fault(stack, f"Kafka broker frozen (SIGSTOP) {DOWN_S:g} s", fault)


def test_postgres_restarted(stack: Stack, fault_pg: PostgresCluster) -> None:
    def fault() -> str:
        fault_pg.restart(down_s=PG_DOWN_S)
        return "fast shutdown, then start"

    _run_with_fault(stack, f"PostgreSQL stopped {PG_DOWN_S:g} s, restarted", fault)

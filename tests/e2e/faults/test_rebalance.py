"""Scenario 5: the judge dispatchers scale 1 -> 3 -> 1 while a run goes on (a Kubernetes scale-up and
scale-down). The topics are created with 3 partitions (the scheduler's ``--partitions`` on the first
publish, before any service has created them with one), so three dispatchers share the completions.

Each change triggers a group rebalance: on scale-up the running dispatcher gives partitions up to the
new members; on scale-down the stopped ones are static members (TRUSTWATCH_INSTANCE_ID), which do not
leave the group on exit, so their partitions wait out the session timeout (10 s) before they move.
"Resumed" is the longest pause in settled judgments in the window after each change (until the next
change, or the run's end): the time the rebalance held work up. The run must end complete with the
stored set equal to the plan, no duplicates and no error.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.e2e.faults.harness import SMALL_SUITE, Progress, Stack, audit, record, scenario_stack
from tests.harness.kafka import KafkaBroker
from tests.harness.postgres import PostgresCluster
from trustwatch.platform.telemetry.names import MESSAGES_CONSUMED
from trustwatch.tools.fake_endpoint import EndpointConfig

pytestmark = pytest.mark.slow

SCENARIO = "5 rebalance"
PARTITIONS = 3
EXTRA = ("dispatcher-2", "dispatcher-3")
#: The 3 dispatchers run together at least this long, and until each added one has consumed
#: completions (process start and group join take 5-30 s on this machine under load), before the scale-down.
TOGETHER_S = 10.0
JOIN_TIMEOUT_S = 90.0


def consumed(stack: Stack, name: str) -> float:
    """The messages a service process has consumed so far (its Prometheus counter, all topics)."""
    args = stack.commands[name]
    port = args[args.index("--metrics-port") + 1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:  # not serving yet
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(MESSAGES_CONSUMED))


def _start_on_three_partitions(s: Stack) -> None:
    """The first publish creates every topic of the run with 3 partitions; services started later find
    them there (a consumer only creates a missing topic, with its bus's single partition)."""
    s.define_defaults()
    warm_up = s.schedule(partitions=PARTITIONS, suite=SMALL_SUITE)["run_id"]
    s.start_all()
    s.wait_complete(warm_up, timeout=240)
    for name in EXTRA:
        s.define_dispatcher(name)


@pytest.fixture(scope="module")
def stack(fault_broker: KafkaBroker, fault_pg: PostgresCluster, data_dir) -> Iterator[Stack]:
    # Paced so that the 200-job run lasts long enough for two rebalances (~0.6 s a request, 2 at a time).
    config = EndpointConfig(seed=5, latency="constant", median_s=0.6)
    # A group that forms while its leader has no metadata of the (pre-created) topic yet gets no
    # partition ("No partition metadata for topic ..."); the bus's unassigned-member check re-joins
    # it, after 120 s by default. 15 s keeps the warm-up short (seen on this machine under load).
    rejoin = {"TRUSTWATCH_KAFKA_UNASSIGNED_REJOIN_S": "15"}
    with scenario_stack(
        fault_broker,
        fault_pg,
        data_dir,
        "s5",
        "s5_rebalance",
        config,
        concurrency=2,
        extra_env=rejoin,
        prepare=_start_on_three_partitions,
    ) as sc:
        yield sc.stack


def test_dispatchers_scale_up_and_down_during_a_run(stack: Stack) -> None:
    began = time.monotonic()
    run_id = stack.schedule(partitions=PARTITIONS)["run_id"]
    plan = stack.plan(run_id)
    with Progress(stack.db_url, run_id) as progress:
        progress.wait_settled(len(plan) // 5, timeout=180)
        at_up = progress.settled
        for name in EXTRA:
            stack.start(name)
        up = time.monotonic()
        time.sleep(TOGETHER_S)
        shares = {name: consumed(stack, name) for name in EXTRA}
        while not all(shares.values()) and time.monotonic() < up + JOIN_TIMEOUT_S and progress.settled < len(plan):
            stack.check_alive()
            time.sleep(1.0)
            shares = {name: consumed(stack, name) for name in EXTRA}
        stack.check_alive()
        at_down = progress.settled
        assert at_down < len(plan), "the run ended before the scale-down: slow the endpoint down"
        for name in EXTRA:
            stack.stop(name)  # SIGTERM, as Kubernetes does on a scale-down
        down = time.monotonic()
        stack.wait_complete(run_id, timeout=300)
        end = time.monotonic()
        finish = end - began
    audited = audit(stack.store, run_id, plan)
    stall_up = progress.longest_pause(up, down)
    stall_down = progress.longest_pause(down, end)
    record(
        SCENARIO,
        "judge dispatchers 1 -> 3",
        audited,
        stall_up,
        note=f"{at_up} of {len(plan)} settled at the change; longest pause in the {down - up:.0f} s after it; "
        f"consumed by the added dispatchers: {shares}",
    )
    same, duplicates, errors, _ = record(
        SCENARIO,
        "judge dispatchers 3 -> 1 (SIGTERM, static members)",
        audited,
        stall_down,
        finish,
        note=f"{at_down} of {len(plan)} settled at the change; longest pause until the run ended",
    )
    stack.check_alive()
    assert same and duplicates == 0 and errors == {}
    # The extra dispatchers took part: each joined the group, got partitions and consumed completions.
    assert all(n > 0 for n in shares.values()), f"messages consumed by the added dispatchers: {shares}"

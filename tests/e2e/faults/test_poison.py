"""Scenario 4: poison. While a run goes on, every topic of the pipeline (jobs, completions, judgments,
runs, and the dead-letter topic itself) gets undecodable bytes and a value of NUL bytes; the jobs,
completions and judgments topics also get a well-formed message whose ``record_json`` is not JSON (of
another run, so the audited run's plan is untouched); and the endpoint answers 20% of the requests
oddly: a NUL inside the text, an escaped lone surrogate, or a 2 MB reply (twice Kafka's default
message size; the generator cuts it to TRUSTWATCH_MAX_REPLY_CHARS).

The run must complete with the stored set equal to the plan, no duplicates and no error; each
undecodable or NUL message of the jobs, completions, judgments and runs topics must reach the
dead-letter topic with the consuming service and a reason; no service may die.

A failing dead-letter produce is scenario 6 (test_dlq_down.py: the broker refuses the DLQ topic's writes).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.faults.harness import Progress, Stack, audit, record, scenario_stack
from tests.harness.kafka import KafkaBroker
from tests.harness.postgres import PostgresCluster
from trustwatch.platform.bus import Topics, kafka_bus
from trustwatch.tools.fake_endpoint import EndpointConfig, FakeEndpoint
from trustwatch.v1 import messages_pb2 as pb

pytestmark = pytest.mark.slow

SCENARIO = "4 poison"
UNDECODABLE = b"\xff\xfe\xfd not a protobuf message"
NULS = b"\x00" * 64
BAD_JSON = "{not json"
OTHER_RUN = "poison-run"


@pytest.fixture(scope="module")
def setup(fault_broker: KafkaBroker, fault_pg: PostgresCluster, data_dir) -> Iterator[tuple[Stack, FakeEndpoint]]:
    config = EndpointConfig(seed=4, latency="constant", median_s=0.2, p_odd=0.2, long_reply_chars=2_000_000)
    with scenario_stack(fault_broker, fault_pg, data_dir, "s4", "s4_poison", config, concurrency=8) as sc:
        yield sc.stack, sc.endpoint


def _bad_json_messages(topics: Topics) -> list[tuple[str, bytes]]:
    job = f"{OTHER_RUN}/truthfulness/external/x/0"
    return [
        (
            topics.jobs("fake"),
            pb.PromptJob(
                ref=pb.JobRef(job_id=job, run_id=OTHER_RUN, task="truthfulness/external"),
                prompt="p",
                record_json=BAD_JSON,
            ).SerializeToString(),
        ),
        (
            topics.completions,
            pb.Completion(
                ref=pb.JobRef(job_id=job, run_id=OTHER_RUN, task="truthfulness/external"),
                text="t",
                record_json=BAD_JSON,
            ).SerializeToString(),
        ),
        (
            topics.judgments,
            pb.Judgment(
                ref=pb.JobRef(job_id=job, run_id=OTHER_RUN, task="truthfulness/external"),
                evaluator="label_match",
                record_json=BAD_JSON,
            ).SerializeToString(),
        ),
    ]


def test_poison_on_every_topic(setup: tuple[Stack, FakeEndpoint]) -> None:
    stack, endpoint = setup
    topics = Topics(stack.prefix)
    began = time.monotonic()
    run_id = stack.schedule()["run_id"]
    plan = stack.plan(run_id)
    decoded_topics = [topics.jobs("fake"), topics.completions, topics.judgments, topics.runs]
    with Progress(stack.db_url, run_id) as progress:
        progress.wait_settled(len(plan) // 4, timeout=180)
        bus = kafka_bus(stack.bootstrap)
        producer = bus.producer()
        for topic in [*decoded_topics, topics.dlq]:
            producer.produce(topic, UNDECODABLE, key=b"poison-undecodable")
            producer.produce(topic, NULS, key=b"poison-nul")
        for topic, value in _bad_json_messages(topics):
            producer.produce(topic, value, key=b"poison-json")
        producer.flush()
        bus.close()
        injected_at = time.monotonic()
        stack.wait_complete(run_id, timeout=300)
        finish = time.monotonic() - began
        resumed = progress.resumed_after(injected_at)
    dead = _dead_letters(stack, topics)
    odd = sum(e.fault == "odd" for e in endpoint.log)
    audited = audit(stack.store, run_id, plan)
    cut = sum(len(r.response) >= 100_000 for r in audited[3])
    by_source = {(d.source_topic, d.key): d for d in dead}
    json_fate = {
        ("jobs" if ".jobs." in topic else topic.rsplit(".", 1)[-1]): (
            by_source[(topic, b"poison-json")].service if (topic, b"poison-json") in by_source else "not dead-lettered"
        )
        for topic, _ in _bad_json_messages(topics)
    }
    same, duplicates, errors, _ = record(
        SCENARIO,
        "undecodable + NUL bytes on 5 topics, bad record JSON on 3, odd replies (NUL, surrogate, 2 MB) at 20%",
        audited,
        resumed,
        finish,
        note=f"{len(dead)} dead letters; bad JSON: {json_fate}; {odd} odd replies, {cut} cut to 100000 chars",
    )
    stack.check_alive()
    assert odd > 0
    assert same and duplicates == 0 and errors == {}
    for topic in decoded_topics:
        for key, payload in ((b"poison-undecodable", UNDECODABLE), (b"poison-nul", NULS)):
            d = by_source.get((topic, key))
            assert d is not None, f"{key!r} on {topic} was not dead-lettered: {sorted(by_source)}"
            assert d.payload == payload and d.service and "undecodable" in d.reason, d


def _dead_letters(stack: Stack, topics: Topics) -> list[pb.DeadLetter]:
    bus = kafka_bus(stack.bootstrap)
    consumer = bus.consumer([topics.dlq], group_id=f"faults-dlq-audit-{time.time_ns()}")
    out: list[pb.DeadLetter] = []
    idle = 0
    try:
        while idle < 3:
            batch = consumer.poll(1.0, 1000)
            for m in batch:
                try:
                    out.append(pb.DeadLetter.FromString(m.value))
                except Exception:  # noqa: BLE001 - the poison put on the DLQ itself
                    continue
            idle = 0 if batch else idle + 1
    finally:
        consumer.close()
        bus.close()
    return out

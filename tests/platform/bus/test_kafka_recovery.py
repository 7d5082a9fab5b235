"""The transport loop on a real broker (slow): a consumer broken under the worker is replaced and the
work goes on; lag after a batch is what remains in this replica's partitions."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
from prometheus_client import CollectorRegistry

from trustwatch.platform.bus import Topics
from trustwatch.platform.messages import decode_job
from trustwatch.platform.runtime import LAG_EVERY_S, Backoff, Out, Result, Worker
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

pytestmark = pytest.mark.slow


def _job(i: int) -> bytes:
    return pb.PromptJob(ref=pb.JobRef(job_id=f"r/t/{i}/0", run_id="r", task="t"), prompt=f"p{i}").SerializeToString()


@pytest.fixture
def setup(kafka_broker):
    from trustwatch.platform.bus.kafka import KafkaBus

    bus = KafkaBus(kafka_broker, client_id="recovery-tests", partitions=1, unassigned_rejoin_s=0)
    name = uuid.uuid4().hex[:8]
    yield bus, f"in-{name}", f"out-{name}", Topics(f"tw-{name}")
    bus.close()


def _produce(bus, topic, ids):
    p = bus.producer()
    for i in ids:
        p.produce(topic, _job(i))
    p.flush()
    p.close()


def _worker(bus, topic_in, topic_out, topics, reg, max_batch=100):
    def handler(jobs):
        return [Result([Out(topic_out, j.ref.job_id.encode())]) for j in jobs]

    return Worker(
        "svc",
        bus,
        [topic_in],
        f"g-{topic_in}",
        decode_job,
        handler,
        ServiceMetrics(reg),
        topics,
        max_batch=max_batch,
        backoff=Backoff(base=0.2, cap=1.0, rng=random.Random(0)),
    )


def _read_all(bus, topic, n, timeout=60.0):
    c = bus.consumer([topic], f"reader-{uuid.uuid4().hex[:6]}")
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += [m.value for m in c.poll(1.0, 500)]
    c.close()
    return got


def test_lag_after_a_batch_equals_the_messages_left(setup):
    bus, topic_in, topic_out, topics = setup
    reg = CollectorRegistry()
    _produce(bus, topic_in, range(10))
    w = _worker(bus, topic_in, topic_out, topics, reg, max_batch=3)
    try:
        first = w.run_once(30.0)
        assert 1 <= first <= 3
        assert reg.get_sample_value("trustwatch_consumer_lag", {"service": "svc"}) == 10 - first
        w._last_lag -= LAG_EVERY_S  # noqa: SLF001 - after a batch it is exported at most this often
        second = w.run_once(30.0)
        assert reg.get_sample_value("trustwatch_consumer_lag", {"service": "svc"}) == 10 - first - second
    finally:
        w.close()


def test_lag_counts_only_the_partitions_assigned_to_this_consumer(setup):
    bus, topic_in, _, _ = setup
    from trustwatch.platform.bus.kafka import KafkaBus

    bus2 = KafkaBus(bus.bootstrap, client_id="recovery-tests", partitions=2)
    bus2.create_topics([topic_in + "-2"], 2)
    p = bus2.producer()
    for i in range(12):  # keys spread the messages over both partitions
        p.produce(topic_in + "-2", _job(i), key=str(i).encode())
    p.flush()
    c = bus2.consumer([topic_in + "-2"], f"g-{topic_in}-2")
    try:
        c.poll(0.5, 1)  # join; this consumer owns both partitions
        total = c.lag()
        assert total >= 11  # one message may have been taken, none committed
        owned = sorted(c._consumer.assignment(), key=lambda tp: tp.partition)
        assert len(owned) == 2
        ends = c._consumer.end_offsets(owned)
        assert total == sum(ends.values())
    finally:
        c.close()
        bus2.close()


def test_a_consumer_closed_under_the_worker_is_replaced_and_nothing_is_lost(setup):
    bus, topic_in, topic_out, topics = setup
    reg = CollectorRegistry()
    _produce(bus, topic_in, range(5))
    w = _worker(bus, topic_in, topic_out, topics, reg)
    assert w.run_once(30.0) == 5
    w.consumer.close()  # as if a broker outage had broken it: every poll on it now raises
    _produce(bus, topic_in, range(5, 10))
    t = threading.Thread(target=w.run_forever, kwargs={"poll_timeout": 0.5}, daemon=True)
    t.start()
    try:
        got = _read_all(bus, topic_out, 10)
    finally:
        w.stop()
        t.join(30)
    assert sorted(got) == sorted(f"r/t/{i}/0".encode() for i in range(10))
    assert reg.get_sample_value("trustwatch_worker_healthy", {"service": "svc"}) == 1


def test_a_static_member_gets_its_partitions_back_quickly_after_a_restart(setup, monkeypatch):
    """With a group.instance.id the new consumer takes the old one's place without waiting out the session."""
    bus, topic_in, _, _ = setup
    from trustwatch.platform.bus.kafka import KafkaBus

    monkeypatch.setenv("TRUSTWATCH_INSTANCE_ID", f"pod-{uuid.uuid4().hex[:6]}")
    monkeypatch.setenv("TRUSTWATCH_KAFKA_SESSION_TIMEOUT_MS", "30000")
    static = KafkaBus(bus.bootstrap, client_id="recovery-tests", partitions=1)
    _produce(static, topic_in, range(3))
    group = f"g-static-{topic_in}"
    c = static.consumer([topic_in], group)
    assert len(c.poll(30.0, 1)) == 1
    c.close()  # a static member does not leave the group; a kill -9 looks the same to the broker
    started = time.monotonic()
    c2 = static.consumer([topic_in], group)
    try:
        got = c2.poll(30.0, 10)
        assert got, "the restarted member got nothing"
        assert time.monotonic() - started < 15  # well within the 30 s session timeout
    finally:
        c2.close()
        static.close()

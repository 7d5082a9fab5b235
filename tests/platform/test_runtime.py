import pytest
from prometheus_client import CollectorRegistry

from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.messages import decode_job
from trustwatch.platform.runtime import ConsumerLoop, Out, Result, TransientError, Worker, is_transient, set_sub_batch
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb


def _job(i: int) -> bytes:
    return pb.PromptJob(ref=pb.JobRef(job_id=f"r/t/{i}/0", run_id="r", task="t"), prompt=f"p{i}").SerializeToString()


def _worker(bus, handler, registry):
    return Worker("svc", bus, ["in"], "g", decode_job, handler, ServiceMetrics(registry), Topics("tw"), max_batch=10)


def test_undecodable_and_invalid_messages_go_to_the_dlq_with_reasons():
    bus, reg = MemoryBus(), CollectorRegistry()
    p = bus.producer()
    p.produce("in", _job(1))
    p.produce("in", b"\xff\xfe not a protobuf")
    p.produce("in", pb.PromptJob(ref=pb.JobRef(job_id="x")).SerializeToString())  # decodes, but lacks run/task/prompt
    p.produce("in", _job(2))
    p.flush()
    seen = []

    def handler(jobs):
        seen.extend(j.ref.job_id for j in jobs)
        return [Result([Out("out", j.ref.job_id.encode())]) for j in jobs]

    w = _worker(bus, handler, reg)
    assert w.run_once(0) == 4
    assert seen == ["r/t/1/0", "r/t/2/0"]
    assert [m.value for m in bus.messages("out")] == [b"r/t/1/0", b"r/t/2/0"]
    dead = [pb.DeadLetter.FromString(m.value) for m in bus.messages("tw.dlq")]
    assert len(dead) == 2
    assert dead[0].payload == b"\xff\xfe not a protobuf" and "undecodable message on in" in dead[0].reason
    assert "lacks required field(s): ref.run_id, ref.task, prompt" in dead[1].reason
    assert reg.get_sample_value("trustwatch_dead_letters_total", {"service": "svc", "reason_kind": "decode"}) == 2
    assert w.consumer.lag() == 0


def test_a_failing_batch_is_not_committed_and_is_delivered_again():
    bus, reg = MemoryBus(), CollectorRegistry()
    p = bus.producer()
    for i in range(3):
        p.produce("in", _job(i))
    p.flush()
    calls = {"n": 0}

    def flaky(jobs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("database restarting")
        return [Result([Out("out", j.ref.job_id.encode())]) for j in jobs]

    w = _worker(bus, flaky, reg)
    with pytest.raises(ConnectionError):
        w.run_once(0)
    assert bus.messages("out") == []
    assert w.run_once(0) == 3  # redelivered to the re-created consumer
    assert len(bus.messages("out")) == 3
    assert w.run_once(0) == 0


def test_per_item_failure_goes_to_dlq_and_the_rest_is_produced():
    bus, reg = MemoryBus(), CollectorRegistry()
    p = bus.producer()
    for i in range(3):
        p.produce("in", _job(i))
    p.flush()

    def handler(jobs):
        return [
            Result(failed="cannot process") if j.ref.job_id.endswith("1/0") else Result([Out("out", b"ok")])
            for j in jobs
        ]

    w = _worker(bus, handler, reg)
    w.run_once(0)
    assert len(bus.messages("out")) == 2
    (dl,) = [pb.DeadLetter.FromString(m.value) for m in bus.messages("tw.dlq")]
    assert dl.reason == "cannot process" and dl.service == "svc" and dl.offset == 1


def _fill(bus, n):
    p = bus.producer()
    for i in range(n):
        p.produce("in", _job(i))
    p.flush()


def test_a_poison_message_is_found_by_halves_and_dead_lettered_while_the_rest_goes_on():
    """A handler error that is not transient (e.g. the database refuses one value) must not stall the
    partition: the message that fails alone goes to the DLQ with the reason, every other one is processed."""
    bus, reg = MemoryBus(), CollectorRegistry()
    _fill(bus, 10)
    calls = []

    def handler(jobs):
        calls.append(len(jobs))
        if any(j.ref.job_id == "r/t/6/0" for j in jobs):
            raise ValueError("text fields cannot contain NUL (0x00) bytes")
        return [Result([Out("out", j.ref.job_id.encode())]) for j in jobs]

    w = _worker(bus, handler, reg)
    assert w.run_once(0) == 10
    assert sorted(m.value for m in bus.messages("out")) == sorted(f"r/t/{i}/0".encode() for i in range(10) if i != 6)
    (dead,) = [pb.DeadLetter.FromString(m.value) for m in bus.messages("tw.dlq")]
    assert pb.PromptJob.FromString(dead.payload).ref.job_id == "r/t/6/0"
    assert "ValueError: text fields cannot contain NUL" in dead.reason
    assert reg.get_sample_value("trustwatch_dead_letters_total", {"service": "svc", "reason_kind": "process"}) == 1
    assert calls[0] == 10 and calls.count(1) >= 2  # bisected; the poison was tried alone twice
    assert len(calls) <= 2 * 10  # bounded
    assert w.consumer.lag() == 0 and w.run_once(0) == 0


@pytest.mark.parametrize("exc", [ConnectionError("refused"), TimeoutError(), TransientError("judge down")])
def test_a_transient_fault_dead_letters_nothing_and_the_batch_comes_back(exc):
    bus, reg = MemoryBus(), CollectorRegistry()
    _fill(bus, 4)
    state = {"down": True}

    def handler(jobs):
        if state["down"]:
            raise exc
        return [Result([Out("out", j.ref.job_id.encode())]) for j in jobs]

    w = _worker(bus, handler, reg)
    with pytest.raises(type(exc)):
        w.run_once(0)
    assert bus.messages("tw.dlq") == [] and bus.messages("out") == []
    state["down"] = False
    assert w.run_once(0) == 4 and len(bus.messages("out")) == 4


def test_is_transient_reads_the_cause_chain_and_library_errors():
    import sqlalchemy.exc as sa_exc
    from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

    try:
        try:
            raise ConnectionRefusedError("db down")
        except ConnectionRefusedError as inner:
            raise RuntimeError("store failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
    assert is_transient(sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")))
    assert not is_transient(sa_exc.DataError("INSERT", {}, Exception("NUL")))
    assert is_transient(KafkaTimeoutError())
    assert not is_transient(MessageSizeTooLargeError())
    assert not is_transient(ValueError("bad record"))


def test_a_failing_dead_letter_produce_in_the_decode_path_commits_nothing():
    """If the DLQ produce raises, the batch must be delivered again, not skipped by the next commit."""
    bus, reg = MemoryBus(), CollectorRegistry()
    p = bus.producer()
    p.produce("in", _job(1))
    p.produce("in", b"\xff\xfe not a protobuf")
    p.produce("in", _job(2))
    p.flush()
    seen = []

    def handler(jobs):
        seen.extend(j.ref.job_id for j in jobs)
        return [Result([Out("out", j.ref.job_id.encode())]) for j in jobs]

    w = _worker(bus, handler, reg)
    real = w.producer.produce
    broken = {"on": True}

    def produce(topic, value, key=None):
        if topic == "tw.dlq" and broken["on"]:
            raise ConnectionError("broker gone")
        return real(topic, value, key)

    w.producer.produce = produce
    with pytest.raises(ConnectionError):
        w.run_once(0)
    broken["on"] = False
    assert w.run_once(0) == 3
    assert sorted(m.value for m in bus.messages("out")) == [b"r/t/1/0", b"r/t/2/0"]
    assert len(bus.messages("tw.dlq")) == 1 and w.consumer.lag() == 0


def test_sub_batch_splits_a_poll_into_handler_calls_and_keeps_the_consumer_alive_between_them():
    bus, reg = MemoryBus(), CollectorRegistry()
    _fill(bus, 10)
    sizes: list[int] = []

    def handler(jobs):
        sizes.append(len(jobs))
        return [Result([Out("out", j.ref.job_id.encode())]) for j in jobs]

    w = _worker(bus, handler, reg)
    set_sub_batch([w], 4, "TRUSTWATCH_TEST_SUB_BATCH")
    keepalives = []
    consumer = w.consumer
    original = consumer.keepalive
    consumer.keepalive = lambda: (keepalives.append(len(sizes)), original())[1]
    assert w.run_once(0) == 10
    assert sizes == [4, 4, 2]
    assert keepalives == [1, 2]  # between the calls, not before the first
    assert len(bus.messages("out")) == 10
    assert consumer.lag() == 0  # the whole poll committed once its outputs were flushed


def test_set_sub_batch_sets_batch_workers_only_and_refuses_a_negative_size():
    bus, reg = MemoryBus(), CollectorRegistry()
    w = _worker(bus, lambda jobs: [Result() for _ in jobs], reg)
    other = ConsumerLoop("other", bus, ["in2"], "g2", ServiceMetrics(CollectorRegistry()), Topics("tw"))
    set_sub_batch([w, other], 3, "TRUSTWATCH_TEST_SUB_BATCH")
    assert w.sub_batch == 3
    assert not hasattr(other, "sub_batch")
    with pytest.raises(ValueError, match="TRUSTWATCH_TEST_SUB_BATCH=-2"):
        set_sub_batch([w], -2, "TRUSTWATCH_TEST_SUB_BATCH")
    assert w.sub_batch == 3 and w.sub_batch_s == 0
    set_sub_batch([w], 3, "TRUSTWATCH_TEST_SUB_BATCH", seconds=2.5)
    assert (w.sub_batch, w.sub_batch_s) == (3, 2.5)
    with pytest.raises(ValueError, match="TRUSTWATCH_TEST_SUB_BATCH_S=-1"):
        set_sub_batch([w], 3, "TRUSTWATCH_TEST_SUB_BATCH", seconds=-1.0)
    assert w.sub_batch_s == 2.5


def _lingering_worker(bus, calls, max_batch):
    """A worker with a long linger whose handler records each call's batch size in ``calls``."""

    def handler(jobs):
        calls.append(len(jobs))
        return [Result() for _ in jobs]

    metrics = ServiceMetrics(CollectorRegistry())
    return Worker(
        "svc", bus, ["in"], "g", decode_job, handler, metrics, Topics("tw"), max_batch=max_batch, linger_s=30.0
    )


def test_linger_gathers_messages_that_trickle_in_into_one_batch(monkeypatch):
    """With linger_s, a batch loop keeps polling after its first message: messages that arrive one
    by one (completions finishing) share one handler call, flush and commit."""
    import threading
    import time

    from trustwatch.platform import runtime

    monkeypatch.setattr(runtime, "LINGER_GAP_S", 2.0)  # a stalled feeder thread must not end the batch
    bus, calls = MemoryBus(), []

    def trickle():
        p = bus.producer()
        for i in range(6):
            p.produce("in", _job(i))
            p.flush()
            time.sleep(0.02)

    w = _lingering_worker(bus, calls, max_batch=6)
    feeder = threading.Thread(target=trickle)
    feeder.start()
    assert w.run_once(5.0) == 6
    feeder.join()
    assert calls == [6] and w.consumer.lag() == 0


def test_linger_ends_at_a_full_batch_or_a_quiet_gap():
    import time

    bus, calls = MemoryBus(), []
    p = bus.producer()
    for i in range(25):
        p.produce("in", _job(i))
    p.flush()

    w = _lingering_worker(bus, calls, max_batch=10)
    t0 = time.monotonic()
    assert [w.run_once(1.0) for _ in range(3)] == [10, 10, 5]
    assert calls == [10, 10, 5] and time.monotonic() - t0 < 5  # full batches at once; the last after a gap


def _lingers():
    """Each of the dispatcher's and the aggregator's loops: its linger (s)."""
    from trustwatch.aggregator.service import Aggregator, aggregator_workers
    from trustwatch.judge.dispatcher import dispatcher_worker
    from trustwatch.platform.store import Store

    bus, topics, metrics = MemoryBus(), Topics("tw"), ServiceMetrics(CollectorRegistry())
    store = Store("sqlite:///:memory:")
    try:
        workers = [
            dispatcher_worker(bus, topics, None, metrics),  # the client is not called here
            *aggregator_workers(bus, topics, Aggregator(store, metrics, topics), metrics),
        ]
    finally:
        store.close()
    return {w.service: w.linger_s for w in workers}


@pytest.mark.parametrize("value", [None, "2", "0"])
def test_the_loops_fed_by_trickles_linger_as_set_and_the_others_do_not(monkeypatch, value):
    """The dispatcher and the aggregator's judgments loop get completions and judgments one by one
    from streaming generators, so they linger (TRUSTWATCH_BATCH_LINGER_S, default 0.5 s); the
    run-event and dead-letter loops answer at once."""
    if value is None:
        monkeypatch.delenv("TRUSTWATCH_BATCH_LINGER_S", raising=False)
    else:
        monkeypatch.setenv("TRUSTWATCH_BATCH_LINGER_S", value)
    expected = 0.5 if value is None else float(value)
    assert _lingers() == {"dispatcher": expected, "aggregator": expected, "aggregator-runs": 0.0, "aggregator-dlq": 0.0}


def test_a_bad_linger_setting_says_what_to_set(monkeypatch):
    monkeypatch.setenv("TRUSTWATCH_BATCH_LINGER_S", "-1")
    with pytest.raises(SystemExit, match="TRUSTWATCH_BATCH_LINGER_S='-1' must be a positive, finite number or 0"):
        _lingers()

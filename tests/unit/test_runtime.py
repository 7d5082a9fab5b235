import pytest
from prometheus_client import CollectorRegistry

from trustwatch.bus import MemoryBus, Topics
from trustwatch.messages import decode_job
from trustwatch.runtime import Out, Result, Worker
from trustwatch.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb


def _job(i: int) -> bytes:
    return pb.PromptJob(job_id=f"r/t/{i}/0", run_id="r", task="t", prompt=f"p{i}").SerializeToString()


def _worker(bus, handler, registry):
    return Worker("svc", bus, ["in"], "g", decode_job, handler, ServiceMetrics(registry), Topics("tw"), max_batch=10)


def test_undecodable_and_invalid_messages_go_to_the_dlq_with_reasons():
    bus, reg = MemoryBus(), CollectorRegistry()
    p = bus.producer()
    p.produce("in", _job(1))
    p.produce("in", b"\xff\xfe not a protobuf")
    p.produce("in", pb.PromptJob(job_id="x").SerializeToString())  # decodes, but lacks run/task/prompt
    p.produce("in", _job(2))
    p.flush()
    seen = []

    def handler(jobs):
        seen.extend(j.job_id for j in jobs)
        return [Result([Out("out", j.job_id.encode())]) for j in jobs]

    w = _worker(bus, handler, reg)
    assert w.run_once(0) == 4
    assert seen == ["r/t/1/0", "r/t/2/0"]
    assert [m.value for m in bus.messages("out")] == [b"r/t/1/0", b"r/t/2/0"]
    dead = [pb.DeadLetter.FromString(m.value) for m in bus.messages("tw.dlq")]
    assert len(dead) == 2
    assert dead[0].payload == b"\xff\xfe not a protobuf" and "undecodable message on in" in dead[0].reason
    assert "lacks required field(s): run_id, task, prompt" in dead[1].reason
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
        return [Result([Out("out", j.job_id.encode())]) for j in jobs]

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
        return [Result(failed="cannot process") if j.job_id.endswith("1/0") else Result([Out("out", b"ok")]) for j in jobs]

    w = _worker(bus, handler, reg)
    w.run_once(0)
    assert len(bus.messages("out")) == 2
    (dl,) = [pb.DeadLetter.FromString(m.value) for m in bus.messages("tw.dlq")]
    assert dl.reason == "cannot process" and dl.service == "svc" and dl.offset == 1

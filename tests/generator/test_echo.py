"""The ``echo`` back-end (plumbing benchmarks): instant replies, a native stream, and the generator
service runs it in streaming mode."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from trustwatch.generator.backends import backend_for
from trustwatch.generator.backends.echo import EchoBackend
from trustwatch.generator.service import generator_worker
from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.streaming import StreamingWorker
from trustwatch.platform.targets import parse_target
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb


def _job(i: int, target: str = "bench") -> pb.PromptJob:
    return pb.PromptJob(
        ref=pb.JobRef(job_id=f"r/t/{i}/0", run_id="r", task="t"),
        prompt=f"prompt number {i} has these words in it",
        sampling=pb.SamplingParams(max_tokens=3 if i % 2 else 64),
        target=pb.Target(name=target),
    )


def test_echo_target_streams_every_job_to_a_completion() -> None:
    spec = parse_target("echo:anything?name=bench")
    backend = backend_for(spec)
    assert isinstance(backend, EchoBackend)
    bus, topics = MemoryBus(), Topics("tw")
    p = bus.producer()
    for i in range(50):
        p.produce(topics.jobs("bench"), _job(i).SerializeToString(), f"r/t/{i}/0".encode())
    p.produce(topics.jobs("bench"), _job(99, target="other").SerializeToString())
    p.flush()
    w = generator_worker(bus, topics, "bench", "echo", backend, ServiceMetrics(CollectorRegistry()), max_in_flight=8)
    assert isinstance(w, StreamingWorker)
    for _ in range(100):
        w.run_once(0)
        if not w.busy and w.consumer.lag() == 0:
            break
    done = {c.ref.job_id: c for c in map(pb.Completion.FromString, (m.value for m in bus.messages(topics.completions)))}
    assert sorted(done) == sorted(f"r/t/{i}/0" for i in range(50))
    assert done["r/t/1/0"].text == "prompt number 1" and done["r/t/1/0"].finish_reason == "length"
    assert done["r/t/2/0"].text == "prompt number 2 has these words in it"
    assert done["r/t/2/0"].completion_tokens == 8 and not done["r/t/2/0"].error
    [dead] = [pb.DeadLetter.FromString(m.value) for m in bus.messages(topics.dlq)]
    assert "for target 'other'" in dead.reason
    assert w.consumer.lag() == 0
    w.close()

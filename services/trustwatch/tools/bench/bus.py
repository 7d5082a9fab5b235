"""The generator service behind the back-end interface, for benchmarks: requests become prompt jobs
on a bus, the real generator worker (poll, decode, generate, produce, flush, commit) turns them into
completions, and those are read back. Comparing it with the bare back-end on the same engine
measures what the bus and the service loop cost."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from trustwatch.generator.backends.base import Backend, GenRequest, GenResult
from trustwatch.generator.service import generator_worker
from trustwatch.platform.bus.base import Bus, Topics
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb


class BusGenerator(Backend):
    def __init__(self, backend: Backend, bus: Bus, target: str = "bench") -> None:
        self.backend = backend
        self.bus = bus
        self.topics = Topics(f"bench-{uuid.uuid4().hex[:8]}")
        self.target = target
        bus.create_topics([self.topics.jobs(target), self.topics.completions, self.topics.dlq])
        self.producer = bus.producer()
        self.worker = generator_worker(bus, self.topics, target, "bench", backend, ServiceMetrics(CollectorRegistry()))
        self.reader = bus.consumer([self.topics.completions], group_id=f"{self.topics.prefix}-reader")

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        topic = self.topics.jobs(self.target)
        for r in requests:
            job = pb.PromptJob(
                ref=pb.JobRef(job_id=r.request_id, run_id="bench", task="bench", item_id=r.request_id),
                prompt=r.prompt,
                sampling=pb.SamplingParams(
                    temperature=r.temperature, max_tokens=r.max_tokens, top_p=r.top_p, seed=r.seed or 0
                ),
                target=pb.Target(name=self.target),
            )
            self.producer.produce(topic, job.SerializeToString(), r.request_id.encode())
        self.producer.flush()
        wanted = {r.request_id for r in requests}
        got: dict[str, pb.Completion] = {}
        while len(got) < len(wanted):
            self.worker.run_once(timeout=1.0)
            for m in self.reader.poll(0.05, 10_000):
                c = pb.Completion.FromString(m.value)
                if c.ref.job_id in wanted:
                    got[c.ref.job_id] = c
        # fresh ids next time (a benchmark repeats the same requests)
        return [
            GenResult(
                request_id=r.request_id,
                text=got[r.request_id].text,
                error=got[r.request_id].error,
                completion_tokens=got[r.request_id].completion_tokens,
            )
            for r in requests
        ]

    def close(self) -> None:
        self.worker.close()
        self.reader.close()
        self.producer.close()

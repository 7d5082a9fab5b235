"""The generator's transport: consume a target's job topic, produce completions."""

from __future__ import annotations

from collections.abc import Sequence

from trustwatch.generator.backends.base import Backend
from trustwatch.generator.core import generate
from trustwatch.platform import config
from trustwatch.platform.bus.base import Bus, Topics
from trustwatch.platform.messages import decode_job
from trustwatch.platform.runtime import Out, Result, Worker
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb


def generator_worker(
    bus: Bus,
    topics: Topics,
    target: str,
    backend_name: str,
    backend: Backend,
    metrics: ServiceMetrics,
    max_batch: int | None = None,
    max_reply_chars: int | None = None,
) -> Worker[pb.PromptJob]:
    """``max_reply_chars``: longest reply put on a completion (None: TRUSTWATCH_MAX_REPLY_CHARS, read
    here like wiring.metrics_port, so that the distributed and the embedded generator both apply it;
    0: no limit)."""
    if max_reply_chars is None:
        max_reply_chars = config.env_int("TRUSTWATCH_MAX_REPLY_CHARS")

    def handle(jobs: Sequence[pb.PromptJob]) -> list[Result]:
        out: list[Result] = []
        wrong = {j.job_id for j in jobs if j.target.name and j.target.name != target}
        good = [j for j in jobs if j.job_id not in wrong]
        completions = {c.job_id: c for c in generate(backend, good, max_reply_chars)}
        for j in jobs:
            if j.job_id in wrong:
                out.append(
                    Result(failed=f"job {j.job_id} is for target {j.target.name!r}, this generator serves {target!r}")
                )
                continue
            c = completions[j.job_id]
            status = "error" if c.error else "ok"
            metrics.completions.labels(target, backend_name, status).inc()
            if not c.error:
                metrics.generation_seconds.labels(target, backend_name).observe(c.latency_s)
                metrics.generated_tokens.labels(target, backend_name).inc(c.completion_tokens)
            out.append(Result([Out(topics.completions, c.SerializeToString(), c.job_id.encode())]))
        return out

    return Worker(
        service="generator",
        bus=bus,
        topics=[topics.jobs(target)],
        group_id=f"trustwatch-generator-{target}",
        decode=decode_job,
        handler=handle,
        metrics=metrics,
        topic_names=topics,
        max_batch=max_batch or backend.preferred_batch,
    )

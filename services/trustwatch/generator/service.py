"""The generator's transport: consume a target's job topic, produce completions.

Two modes, same completions (:func:`trustwatch.generator.core.to_completion`):

* streaming (a back-end with :meth:`Backend.stream`, unless TRUSTWATCH_GENERATOR_STREAMING=off): jobs
  go into the back-end one at a time while it has room and each completion is produced as soon as
  its reply is back (:class:`trustwatch.platform.streaming.StreamingWorker`), so the back-end never
  idles while a batch's slowest reply drains;
* batch: poll a batch, generate it whole, produce, commit (:class:`trustwatch.platform.runtime.Worker`).

Both stop at an outage (:class:`OutageBreaker`): once ``TRUSTWATCH_GENERATOR_OUTAGE_AFTER`` requests in a
row ended in a transient error (after the back-end's own retries), no further error is produced; the
turn or batch raises :class:`EndpointDown`, a transient error, so the transport loop's circuit breaker
keeps the work uncommitted (delivered again), backs off and tries again, and the backlog waits for the
endpoint instead of turning into error results. The errors produced before the breaker tripped are
transient rows that a later success replaces and a re-run retries.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import replace

from trustwatch.generator.backends.base import Backend, Stream
from trustwatch.generator.core import generate, to_completion, to_request
from trustwatch.platform import config
from trustwatch.platform.bus.base import Bus, Topics
from trustwatch.platform.messages import decode_job
from trustwatch.platform.runtime import ConsumerLoop, Out, Result, TransientError, Worker
from trustwatch.platform.streaming import ItemStream, StreamingWorker
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

log = logging.getLogger(__name__)


class EndpointDown(TransientError):
    """The target's endpoint failed many requests in a row with transient errors: pause, retry later."""


class OutageBreaker:
    """Counts completions that ended in a transient error with no other outcome since; at ``after`` in a
    row (0: never) :meth:`observe` raises :class:`EndpointDown` instead of letting the error out, and
    keeps doing so for each further transient error until a request gets any other outcome (a reply,
    or a final error: the endpoint answered)."""

    def __init__(self, after: int) -> None:
        if after < 0:
            raise ValueError(f"TRUSTWATCH_GENERATOR_OUTAGE_AFTER={after}: set 0 (off) or a number of requests")
        self.after = after
        self.streak = 0

    def observe(self, c: pb.Completion) -> None:
        if not (c.error and c.error_kind == pb.ERROR_KIND_TRANSIENT):
            self.streak = 0
            return
        self.streak += 1
        if self.after and self.streak >= self.after:
            raise EndpointDown(
                f"{self.streak} requests in a row to target {c.ref.target!r} failed after their retries "
                f"(last: {c.error[:300]}); pausing until the endpoint answers again"
            )


class _Outputs:
    """Completions as transport results, with the generator's metrics."""

    def __init__(self, topics: Topics, target: str, backend_name: str, metrics: ServiceMetrics) -> None:
        self.topics, self.target, self.backend_name, self.metrics = topics, target, backend_name, metrics

    def wrong_target(self, job: pb.PromptJob) -> Result | None:
        if job.target.name and job.target.name != self.target:
            return Result(
                failed=f"job {job.ref.job_id} is for target {job.target.name!r}, this generator serves {self.target!r}"
            )
        return None

    def completed(self, c: pb.Completion) -> Result:
        status = "error" if c.error else "ok"
        self.metrics.completions.labels(self.target, self.backend_name, status).inc()
        if not c.error:
            self.metrics.generation_seconds.labels(self.target, self.backend_name).observe(c.latency_s)
            self.metrics.generated_tokens.labels(self.target, self.backend_name).inc(c.completion_tokens)
        return Result([Out(self.topics.completions, c.SerializeToString(), c.ref.job_id.encode())])


class JobStream(ItemStream[pb.PromptJob]):
    """A back-end's :class:`Stream` as the streaming loop's item stream: jobs in, completions out.

    Each request gets a distinct id (``<job id>#<token>``), so the same job delivered twice while
    in flight (after a rebalance) cannot be confused. A job for another target fails at once.
    """

    def __init__(
        self, stream: Stream, outputs: _Outputs, max_reply_chars: int | None, breaker: OutageBreaker | None = None
    ) -> None:
        self.stream = stream
        self.capacity = stream.capacity
        self.outputs = outputs
        self.max_reply_chars = max_reply_chars
        self.breaker = breaker or OutageBreaker(0)
        self._jobs: dict[str, tuple[int, pb.PromptJob]] = {}
        self._ready: deque[tuple[int, Result]] = deque()

    def submit(self, token: int, item: pb.PromptJob) -> None:
        wrong = self.outputs.wrong_target(item)
        if wrong is not None:
            self._ready.append((token, wrong))
            return
        request = replace(to_request(item), request_id=f"{item.ref.job_id}#{token}")
        self.stream.submit(request)
        self._jobs[request.request_id] = (token, item)

    def collect(self, timeout: float = 0.0) -> list[tuple[int, Result]]:
        out = list(self._ready)
        self._ready.clear()
        for r in self.stream.results(0.0 if out else timeout):
            found = self._jobs.pop(r.request_id, None)
            if found is None:
                log.warning("generator: a result for unknown request %s ignored", r.request_id)
                continue
            token, job = found
            completion = to_completion(job, r, self.max_reply_chars)
            self.breaker.observe(completion)  # raises at an outage: nothing of this turn is committed
            out.append((token, self.outputs.completed(completion)))
        return out

    @property
    def in_flight(self) -> int:
        return self.stream.in_flight + len(self._ready)

    def close(self) -> None:
        self._jobs.clear()
        self._ready.clear()
        self.stream.close()


def open_stream(backend: Backend) -> Stream | None:
    """The back-end's stream, or None when it has no streaming mode (does not override
    :meth:`Backend.stream`, or its override raises NotImplementedError)."""
    if getattr(type(backend), "stream", Backend.stream) is Backend.stream:
        return None
    try:
        return backend.stream()
    except NotImplementedError:
        return None


def generator_worker(
    bus: Bus,
    topics: Topics,
    target: str,
    backend_name: str,
    backend: Backend,
    metrics: ServiceMetrics,
    max_batch: int | None = None,
    max_reply_chars: int | None = None,
    streaming: bool | None = None,
    max_in_flight: int | None = None,
    outage_after: int | None = None,
) -> ConsumerLoop:
    """``max_reply_chars``: longest reply put on a completion (None: TRUSTWATCH_MAX_REPLY_CHARS, read
    here like wiring.metrics_port, so that the distributed and the embedded generator both apply it;
    0: no limit). ``streaming`` (None: TRUSTWATCH_GENERATOR_STREAMING) and ``max_in_flight`` (None:
    TRUSTWATCH_GENERATOR_IN_FLIGHT; 0: the back-end's capacity) choose and bound the streaming mode;
    ``max_batch`` is the batch mode's. ``outage_after`` (None: TRUSTWATCH_GENERATOR_OUTAGE_AFTER; 0: off):
    transient errors in a row that make the generator pause instead of producing more (see the module)."""
    if max_reply_chars is None:
        max_reply_chars = config.env_int("TRUSTWATCH_MAX_REPLY_CHARS")
    if streaming is None:
        mode = config.env("TRUSTWATCH_GENERATOR_STREAMING").strip().lower()
        if mode not in ("auto", "off"):
            raise ValueError(f"TRUSTWATCH_GENERATOR_STREAMING={mode!r}: expected `auto` or `off`")
        streaming = mode == "auto"
    outputs = _Outputs(topics, target, backend_name, metrics)
    breaker = OutageBreaker(
        config.env_int("TRUSTWATCH_GENERATOR_OUTAGE_AFTER") if outage_after is None else outage_after
    )
    group = f"trustwatch-generator-{target}"
    first = open_stream(backend) if streaming else None
    if first is not None:
        if max_in_flight is None:
            max_in_flight = config.env_int("TRUSTWATCH_GENERATOR_IN_FLIGHT")
        opened = [first]

        def make_stream() -> JobStream:
            # The probe's stream serves first; after a failure the loop asks for a fresh one.
            stream = opened.pop() if opened else backend.stream()
            return JobStream(stream, outputs, max_reply_chars, breaker)

        return StreamingWorker(
            service="generator",
            bus=bus,
            topics=[topics.jobs(target)],
            group_id=group,
            decode=decode_job,
            open_stream=make_stream,
            metrics=metrics,
            topic_names=topics,
            max_in_flight=max_in_flight,
        )

    def handle(jobs: Sequence[pb.PromptJob]) -> list[Result]:
        wrong = {j.ref.job_id: r for j in jobs if (r := outputs.wrong_target(j)) is not None}
        good = [j for j in jobs if j.ref.job_id not in wrong]
        completions = {c.ref.job_id: c for c in generate(backend, good, max_reply_chars)}
        for c in completions.values():
            breaker.observe(c)  # raises at an outage: the batch is retried later, nothing produced
        return [
            wrong[j.ref.job_id] if j.ref.job_id in wrong else outputs.completed(completions[j.ref.job_id]) for j in jobs
        ]

    return Worker(
        service="generator",
        bus=bus,
        topics=[topics.jobs(target)],
        group_id=group,
        decode=decode_job,
        handler=handle,
        metrics=metrics,
        topic_names=topics,
        max_batch=max_batch or backend.preferred_batch,
    )

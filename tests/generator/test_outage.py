"""An endpoint outage pauses the generator instead of turning its backlog into error results
(``OutageBreaker``), in both the streaming and the batch mode, over the memory bus."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from trustwatch.generator.backends.base import Backend, GenRequest, GenResult, Stream
from trustwatch.generator.service import EndpointDown, OutageBreaker, generator_worker
from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.runtime import is_transient
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

TRANSIENT, FINAL = pb.ERROR_KIND_TRANSIENT, pb.ERROR_KIND_FINAL


def _c(kind: int = 0, error: str = "") -> pb.Completion:
    return pb.Completion(
        ref=pb.JobRef(job_id="j", target="m"), error=error, error_kind=kind, text="" if error else "hi"
    )


def test_the_breaker_trips_at_the_streak_and_any_other_outcome_resets_it() -> None:
    b = OutageBreaker(3)
    b.observe(_c(TRANSIENT, "down"))
    b.observe(_c(TRANSIENT, "down"))
    b.observe(_c())  # a reply: the endpoint answers
    b.observe(_c(TRANSIENT, "down"))
    b.observe(_c(FINAL, "prompt too long"))  # a final error is an answer too
    b.observe(_c(TRANSIENT, "down"))
    b.observe(_c(TRANSIENT, "down"))
    with pytest.raises(EndpointDown, match="3 requests in a row") as e:
        b.observe(_c(TRANSIENT, "connection refused"))
    assert is_transient(e.value)
    with pytest.raises(EndpointDown):  # still down: every further transient error raises
        b.observe(_c(TRANSIENT, "connection refused"))
    b.observe(_c())
    assert b.streak == 0
    off = OutageBreaker(0)
    for _ in range(100):
        off.observe(_c(TRANSIENT, "down"))
    with pytest.raises(ValueError, match="TRUSTWATCH_GENERATOR_OUTAGE_AFTER"):
        OutageBreaker(-1)


class _Endpoint(Backend):
    """Answers at once, or, while ``down``, fails every request as an unreachable endpoint does."""

    name = "fake"
    preferred_batch = 4

    def __init__(self) -> None:
        self.down = True
        self.requests = 0

    def answer(self, r: GenRequest) -> GenResult:
        self.requests += 1
        if self.down:
            return GenResult(r.request_id, error="cannot reach the endpoint: connection refused")
        return GenResult(r.request_id, text="ok", completion_tokens=1)

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        return [self.answer(r) for r in requests]

    def stream(self) -> Stream:
        return _Stream(self)


class _Stream(Stream):
    def __init__(self, endpoint: _Endpoint) -> None:
        self.endpoint, self.capacity = endpoint, 4
        self._done: deque[GenResult] = deque()

    def submit(self, request: GenRequest) -> None:
        self._done.append(self.endpoint.answer(request))

    def results(self, timeout: float = 0.0) -> list[GenResult]:
        out = list(self._done)
        self._done.clear()
        return out

    @property
    def in_flight(self) -> int:
        return len(self._done)

    def close(self) -> None:
        self._done.clear()


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "batch"])
def test_an_outage_pauses_the_generator_and_the_backlog_waits_for_the_endpoint(streaming: bool) -> None:
    bus, topics = MemoryBus(), Topics("tw")
    producer = bus.producer()
    for i in range(20):
        job = pb.PromptJob(ref=pb.JobRef(job_id=f"r/t/{i}/0", run_id="r", task="t", item_id=str(i)), prompt="p")
        job.target.name = "m"
        producer.produce(topics.jobs("m"), job.SerializeToString(), job.ref.job_id.encode())
    producer.flush()
    endpoint = _Endpoint()
    metrics = ServiceMetrics(CollectorRegistry())
    worker = generator_worker(bus, topics, "m", "fake", endpoint, metrics, streaming=streaming, outage_after=3)

    def turns(n: int) -> int:
        """Drive the loop as run_forever does (a transient error: back off, try again); count the trips."""
        trips = 0
        for _ in range(n):
            try:
                worker.run_once(timeout=0.01)
            except EndpointDown:
                trips += 1
        return trips

    def completions() -> list[pb.Completion]:
        return [pb.Completion.FromString(m.value) for m in bus.messages(topics.completions)]

    # Down: at most two errors get out (the streak below the limit), then every turn trips.
    assert turns(30) >= 10
    errors = [c for c in completions() if c.error]
    assert len(errors) <= 2 and all(c.error_kind == TRANSIENT for c in errors)
    assert endpoint.requests > 20  # the jobs were tried again and again, not given up
    # Back up: every job gets its reply; the few errors of the outage stay transient (replaced downstream).
    endpoint.down = False
    assert turns(30) == 0
    replies = {c.ref.job_id for c in completions() if not c.error}
    assert replies == {f"r/t/{i}/0" for i in range(20)}
    assert len(completions()) - len(replies) == len(errors)


def test_without_the_breaker_every_job_of_an_outage_becomes_a_transient_error() -> None:
    # what the embedded mode keeps (outage_after=0), and what the distributed generator did before
    bus, topics = MemoryBus(), Topics("tw")
    producer = bus.producer()
    for i in range(6):
        job = pb.PromptJob(ref=pb.JobRef(job_id=f"r/t/{i}/0", run_id="r", task="t", item_id=str(i)), prompt="p")
        job.target.name = "m"
        producer.produce(topics.jobs("m"), job.SerializeToString(), job.ref.job_id.encode())
    producer.flush()
    worker = generator_worker(
        bus, topics, "m", "fake", _Endpoint(), ServiceMetrics(CollectorRegistry()), outage_after=0
    )
    for _ in range(10):
        worker.run_once(timeout=0.01)
    out = [pb.Completion.FromString(m.value) for m in bus.messages(topics.completions)]
    assert len(out) == 6 and all(c.error_kind == TRANSIENT for c in out)

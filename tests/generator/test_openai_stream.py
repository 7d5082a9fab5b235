"""The openai back-end in streaming mode, against the fake endpoint: requests go in one at a time,
results come out as each finishes, and a caller that keeps ``capacity`` submitted keeps the
endpoint busy with that many requests."""

from __future__ import annotations

from typing import Any

import pytest

from trustwatch.generator.backends._kinds import error_kind_of
from trustwatch.generator.backends.base import GenRequest, GenResult
from trustwatch.tools.bench.endpoint import stream_results
from trustwatch.tools.fake_endpoint import EndpointConfig, FakeEndpoint, concurrency_profile
from trustwatch.v1 import messages_pb2 as pb


def reqs(n: int, max_tokens: int = 16, tag: str = "p") -> list[GenRequest]:
    return [GenRequest(f"r{i}", f"{tag} {i}", temperature=0.0, max_tokens=max_tokens) for i in range(n)]


def test_a_full_stream_keeps_the_endpoint_at_capacity(backend_factory: Any) -> None:
    c, n = 8, 96
    cfg = EndpointConfig(seed=0, latency="lognormal", median_s=0.2, sigma=1.0)
    with FakeEndpoint(cfg) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=c)
        out = stream_results(backend, reqs(n))
        log = sorted(ep.log, key=lambda e: e.arrival)
    assert sorted(r.request_id for r in out) == sorted(f"r{i}" for i in range(n))
    assert all(not r.error and r.text and r.completion_tokens > 0 for r in out), [r.error for r in out if r.error]
    assert len(log) == n and max(e.in_flight for e in log) == c  # never more than capacity on the wire
    # Steady state: from the moment the first C are in until the last C are all that is left.
    t0 = log[c - 1].arrival
    t1 = sorted(e.end for e in log)[n - c]
    lowest, mean = concurrency_profile(log, t0, t1)
    # A finished request is replaced as soon as the caller sees it: the time between a reply
    # leaving the server and its replacement arriving is the client's own work on both (the SDK
    # parses one reply and builds the next request: milliseconds, more on a busy machine) in a
    # ~330 ms request. Batches of C would average about half of C here, and fall to 0 between them.
    assert mean >= c - 1.5, (lowest, mean)
    assert lowest >= 1, (lowest, mean)
    # A typical replacement arrives while (nearly) all the others are still on the wire.
    assert sorted(e.in_flight for e in log[c:])[len(log[c:]) // 2] >= c - 1


def test_results_come_out_in_finishing_order(backend_factory: Any) -> None:
    c = 12
    cfg = EndpointConfig(seed=3, latency="lognormal", median_s=0.1, sigma=1.0)
    with FakeEndpoint(cfg) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=c)
        stream = backend.stream()
        for r in reqs(c):
            stream.submit(r)
        out: list[GenResult] = []
        while stream.in_flight:
            out.extend(stream.results(timeout=30))
        stream.close()
        ends = {e.prompt_head: e.end for e in ep.log}
    assert len(out) == c and all(not r.error for r in out)
    finished = [ends[f"p {r.request_id[1:]}"] for r in out]
    # Every result comes out after all those that finished clearly (20 ms) earlier at the server.
    for i, later in enumerate(finished):
        assert all(earlier < later + 0.02 for earlier in finished[:i]), finished
    # ...which is not the order they were submitted in (the draws are seeded, so this is fixed).
    assert [r.request_id for r in out] != [r.request_id for r in reqs(c)]


def test_failures_become_error_results_of_the_right_kind(backend_factory: Any) -> None:
    cfg = EndpointConfig(seed=1, p_400=0.25, p_500=0.25, p_not_json=0.1)
    with FakeEndpoint(cfg) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=4, max_retries=0)
        out = stream_results(backend, reqs(40))
        fault = {e.prompt_head: e.fault for e in ep.log}
    assert len(out) == 40
    kinds = {"": pb.ERROR_KIND_UNSPECIFIED, "400": pb.ERROR_KIND_FINAL}
    seen = set()
    for r in out:
        f = fault[f"p {r.request_id[1:]}"]
        seen.add(f)
        assert error_kind_of(r) == kinds.get(f, pb.ERROR_KIND_TRANSIENT), (f, r)
        assert bool(r.error) == bool(f) and bool(r.text) != bool(f), (f, r)
        if f == "400":
            assert r.error.startswith(f"HTTP 400 from {ep.base_url}: This model's maximum context length"), r.error
    assert seen == {"", "400", "500", "not_json"}  # the seeded draws give every kind


def test_capacity_and_closing_are_enforced(backend_factory: Any) -> None:
    with FakeEndpoint(EndpointConfig(latency="constant", median_s=0.05)) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=2)
        stream = backend.stream()
        assert stream.capacity == 2
        a, b, extra = reqs(3)
        stream.submit(a)
        stream.submit(b)
        with pytest.raises(RuntimeError, match="capacity 2 exceeded"):
            stream.submit(extra)
        assert stream.results(0) == [] and stream.in_flight == 2  # nothing waits with timeout 0
        got: list[GenResult] = []
        while len(got) < 2:
            got += stream.results(timeout=10)
        assert stream.in_flight == 0 and {r.request_id for r in got} == {"r0", "r1"}
        stream.submit(extra)
        stream.close()
        with pytest.raises(RuntimeError, match="closed"):
            stream.submit(a)
        # The batch API still works beside (and after) a stream.
        assert [r.request_id for r in backend.generate(reqs(3))] == ["r0", "r1", "r2"]
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.stream()

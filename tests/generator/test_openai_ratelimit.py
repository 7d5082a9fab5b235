"""Rate limits of an API target (the ``openai`` back-end and ``_ratelimit``): rpm / tpm ceilings,
Retry-After, the x-ratelimit headers, and the AIMD window, against the fake endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from trustwatch.generator.backends._ratelimit import (
    AimdWindow,
    TokenBucket,
    estimate_tokens,
    hold_from_headers,
    parse_duration,
)
from trustwatch.generator.backends.base import GenRequest
from trustwatch.generator.backends.openai_api import OpenAIBackend
from trustwatch.platform.targets import parse_target
from trustwatch.tools.bench.endpoint import stream_results
from trustwatch.tools.fake_endpoint import EndpointConfig, FakeEndpoint


def reqs(n: int, max_tokens: int = 16, tag: str = "p") -> list[GenRequest]:
    return [GenRequest(f"r{i}", f"{tag} {i}", temperature=0.0, max_tokens=max_tokens) for i in range(n)]


@pytest.fixture
def backend_factory() -> Iterator[Callable[..., OpenAIBackend]]:
    made: list[OpenAIBackend] = []

    def make(**kw: Any) -> OpenAIBackend:
        kw.setdefault("model", "fake")
        kw.setdefault("backoff_base_s", 0.02)
        kw.setdefault("backoff_max_s", 0.1)
        b = OpenAIBackend(**kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


# ---------------------------------------------------------------------------------------------
# Against the fake endpoint
# ---------------------------------------------------------------------------------------------


def test_the_rpm_ceiling_paces_requests(backend_factory: Any) -> None:
    # 1,200 a minute: 20 a second, at most a second's worth (20) at once.
    with FakeEndpoint(EndpointConfig(seed=0)) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=16, rpm=1200)
        out = backend.generate(reqs(60))
        arrivals = sorted(e.arrival for e in ep.log)
    assert all(not r.error for r in out) and len(arrivals) == 60
    # The ceiling paces requests when they leave the back-end; the endpoint sees them after the
    # client's own work on each (milliseconds, more on a busy machine), which may bunch a few.
    # In any second: the burst (20), a second's refill (20), and some slack for that bunching.
    busiest = max(sum(1 for u in arrivals if t <= u < t + 1.0) for t in arrivals)
    assert busiest <= 45, busiest
    # And overall: 60 requests, 20 at once then 20 a second, take two seconds (less the bunching).
    assert arrivals[-1] - arrivals[0] >= 1.5
    assert backend.paced_s > 0


def test_the_tpm_ceiling_paces_tokens(backend_factory: Any) -> None:
    # 60,000 tokens a minute (1,000 a second); each request costs about 8 + 2 + 200 tokens.
    cost = estimate_tokens("p 0", 200)
    with FakeEndpoint(EndpointConfig(seed=0)) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=16, tpm=60_000)
        out = backend.generate(reqs(12, max_tokens=200))
        arrivals = sorted(e.arrival for e in ep.log)
    assert all(not r.error for r in out)
    span = arrivals[-1] - arrivals[0]
    # (0.3 s: the client's own work may bring requests paced apart closer together at the endpoint)
    assert 12 * cost <= 1000 + 1000 * (span + 0.3) + cost, (span, cost)


def test_a_target_rpm_reaches_the_backend() -> None:
    spec = parse_target("openai:m@http://127.0.0.1:9/v1?rpm=90&tpm=5000")
    backend = OpenAIBackend.from_target(spec, concurrency=3)
    try:
        assert (backend.rpm, backend.tpm, backend.concurrency) == (90, 5000, 3)
        assert backend._rpm is not None and backend._rpm.per_minute == 90
    finally:
        backend.close()


def test_retry_after_of_a_429_is_honoured(backend_factory: Any) -> None:
    cfg = EndpointConfig(seed=2, p_429=0.5, retry_after_s=0.4)
    with FakeEndpoint(cfg) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=1, max_retries=20)
        out = backend.generate(reqs(4))
        log = sorted(ep.log, key=lambda e: e.arrival)
    assert all(not r.error for r in out)
    refused = [e for e in log if e.status == 429]
    assert refused and backend.rate_limited == len(refused)
    for e in refused:
        retry = next(x for x in log if x.prompt_head == e.prompt_head and x.arrival > e.end)
        assert retry.arrival - e.end >= 0.35  # Retry-After 0.4 s (retry-after-ms: 400)


def test_a_spent_quota_holds_every_new_request_until_its_reset(backend_factory: Any) -> None:
    # An injected 429 says x-ratelimit-remaining-requests: 0 and reset 0.5 s: nothing else may go
    # out until then, not only the request that was refused.
    cfg = EndpointConfig(seed=4, p_429=0.1, retry_after_s=0.5)
    with FakeEndpoint(cfg) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=4, max_retries=20, adaptive=False)
        out = backend.generate(reqs(40))
        log = sorted(ep.log, key=lambda e: e.arrival)
    assert all(not r.error for r in out)
    refused = [e for e in log if e.status == 429]
    assert refused and backend.held_s > 0
    for e in refused:
        # Requests already on their way when the 429 left may still arrive shortly after it.
        inside = [x for x in log if e.end + 0.15 < x.arrival < e.end + 0.45]
        assert not inside, (e, inside)


def test_the_servers_own_rpm_limit_is_survived(backend_factory: Any) -> None:
    with FakeEndpoint(EndpointConfig(seed=0, rpm=300)) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=8, max_retries=20)
        out = backend.generate(reqs(15))
        log = ep.log
    assert all(not r.error for r in out), [r.error for r in out if r.error]
    assert backend.rate_limited >= 1 and backend.held_s > 0
    # The holds keep refusals few: far fewer than one per request.
    assert sum(e.status == 429 for e in log) <= 10


def test_aimd_shrinks_the_window_under_429s_and_recovers_after(backend_factory: Any) -> None:
    c = 16
    cfg = EndpointConfig(seed=5, latency="lognormal", median_s=0.02, sigma=0.5, p_429=0.2, retry_after_s=0.01)
    with FakeEndpoint(cfg) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=c, max_retries=30)
        out = stream_results(backend, reqs(150, tag="a"))
        assert all(not r.error for r in out)
        window = backend.window
        assert window.decreases >= 3 and window.low <= c // 4, vars(window)
        assert window.window < c
        during = sorted(ep.log, key=lambda e: e.arrival)[50:]
        # The endpoint saw far fewer than C at once while 429s kept coming.
        assert max(e.in_flight for e in during) < c, max(e.in_flight for e in during)

        ep.configure(p_429=0.0, median_s=0.05)
        ep.clear_log()
        out = stream_results(backend, reqs(300, tag="b"))
        assert all(not r.error for r in out)
        assert window.window == c and window.increases >= c - window.low
        # The stream fills the recovered window again (as far as the client's own CPU lets it).
        assert max(e.in_flight for e in ep.log) > max(e.in_flight for e in during) + 2


# ---------------------------------------------------------------------------------------------
# The pieces
# ---------------------------------------------------------------------------------------------


def test_parse_duration() -> None:
    assert parse_duration("1s") == 1.0
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_duration("2.5") == 2.5
    assert parse_duration(None) is None
    assert parse_duration("soon") is None and parse_duration("1s later") is None


def test_hold_from_headers() -> None:
    assert hold_from_headers({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1s"}) is None
    assert hold_from_headers({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}) == 1.5
    both = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "200ms",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "2s",
    }
    assert hold_from_headers(both) == 2.0
    assert hold_from_headers({"x-ratelimit-remaining-tokens": "0"}) == 1.0  # no reset given: a second
    assert hold_from_headers({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "9h"}) == 120.0
    assert hold_from_headers({"x-ratelimit-remaining-requests": "many"}) is None
    assert hold_from_headers(None) is None and hold_from_headers({}) is None


def test_token_bucket_holds_a_seconds_worth_and_allows_debt() -> None:
    now = [0.0]
    bucket = TokenBucket(600, clock=lambda: now[0])  # 10 a second
    assert bucket.capacity == 10
    for _ in range(10):
        assert bucket.delay(1) == 0
        bucket.take(1)
    assert bucket.delay(1) == pytest.approx(0.1)
    now[0] += 0.1
    assert bucket.delay(1) == 0
    bucket.take(1)
    # A cost above the capacity waits for a full bucket, then goes into debt.
    now[0] += 5
    assert bucket.delay(25) == 0
    bucket.take(25)
    assert bucket.delay(1) == pytest.approx(1.6)
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_aimd_window_halves_once_per_round_and_grows_by_one_per_window() -> None:
    async def run() -> None:
        w = AimdWindow(8)
        rounds = [await w.acquire() for _ in range(8)]
        assert w.in_use == 8
        waiter = asyncio.ensure_future(w.acquire())
        await asyncio.sleep(0)
        assert not waiter.done()
        w.overloaded(rounds[0])
        w.overloaded(rounds[1])  # sent in the same round: no second cut
        assert (w.window, w.decreases, w.low) == (4, 1, 4)
        for _ in range(4):
            w.release()
        assert not waiter.done() and w.in_use == 4  # the window is 4 now
        w.release()
        await asyncio.sleep(0)
        assert waiter.done() and w.in_use == 4
        later = waiter.result()
        w.overloaded(later)  # sent after the cut: cuts again
        assert w.window == 2
        for _ in range(2):
            w.succeeded()
        assert w.window == 3
        for _ in range(100):
            w.succeeded()
        assert w.window == 8  # never above the limit
        for _ in range(4):
            w.release()
        assert w.in_use == 0
        # A cancelled waiter leaves no place taken and no place owed.
        one = AimdWindow(1)
        await one.acquire()
        queued = asyncio.ensure_future(one.acquire())
        await asyncio.sleep(0)
        queued.cancel()
        await asyncio.sleep(0)
        one.release()
        assert one.in_use == 0 and not one._waiters
        fixed = AimdWindow(4, adaptive=False)
        fixed.overloaded(0)
        assert fixed.window == 4

    asyncio.run(run())

"""Rate limits of an API target (the ``openai`` back-end and ``_ratelimit``): rpm / tpm ceilings,
Retry-After, the x-ratelimit headers, and the AIMD window, against the fake endpoint."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from trustwatch.generator.backends._ratelimit import (
    AimdWindow,
    QuotaHold,
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
    # Every request is refused with x-ratelimit-remaining-requests: 0 and reset 0.5 s, and no success
    # says otherwise: after the first refusals nothing else may go out until the reset.
    cfg = EndpointConfig(seed=4, p_429=1.0, retry_after_s=0.5)
    with FakeEndpoint(cfg) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=4, max_retries=0, adaptive=False)
        out = backend.generate(reqs(8))
        log = sorted(ep.log, key=lambda e: e.arrival)
    assert all(r.error for r in out) and len(log) == 8
    first_refusal = min(e.end for e in log)
    later = [e for e in log if e.arrival > first_refusal + 0.1]
    # The four that were on the wire came back refused; the other four waited out the reset.
    assert len(later) == 4 and min(e.arrival for e in later) >= first_refusal + 0.45, log
    assert backend.held_s > 0 and backend.quota.holds >= 1 and backend.quota.lifted == 0


def test_a_429_among_successes_neither_holds_everything_nor_shrinks_the_window(backend_factory: Any) -> None:
    # 20% of requests are refused at random, each saying x-ratelimit-remaining-requests: 0 (reset
    # 0.2 s); the requests sent after a refused one keep succeeding, which shows the quota is not
    # spent: the hold is lifted, and the window stays whole. Each refused request still waits its
    # own Retry-After (0.2 s).
    c = 8
    cfg = EndpointConfig(seed=6, latency="lognormal", median_s=0.02, sigma=0.5, p_429=0.2, retry_after_s=0.2)
    with FakeEndpoint(cfg) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=c, max_retries=20)
        out = stream_results(backend, reqs(120))
        log = sorted(ep.log, key=lambda e: e.arrival)
    assert all(not r.error for r in out)
    refused = [e for e in log if e.status == 429]
    assert refused and backend.rate_limited == len(refused)
    assert backend.quota.lifted + backend.quota.stale >= 1  # the later successes overruled the holds
    assert backend.window.low >= c // 2, vars(backend.window)
    for e in refused:
        retry = next(x for x in log if x.prompt_head == e.prompt_head and x.arrival > e.end)
        assert retry.arrival - e.end >= 0.15  # its own Retry-After (retry-after-ms: 200)


def test_the_servers_own_rpm_limit_is_survived(backend_factory: Any) -> None:
    with FakeEndpoint(EndpointConfig(seed=0, rpm=300)) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=8, max_retries=20)
        out = backend.generate(reqs(15))
        log = ep.log
    assert all(not r.error for r in out), [r.error for r in out if r.error]
    assert backend.rate_limited >= 1 and backend.held_s > 0
    # The holds keep refusals few. The server admits 5 a second; at most 7 are refused in the first
    # second (8 go on the wire before the first reply's "remaining: 0" is read) and at most 5 when
    # the hold ends (the 10 requests left go out together, 5 are admitted): 12 at most, against
    # 55 here with the holds taken out (each refused request retrying on its own).
    assert sum(e.status == 429 for e in log) <= 12


def test_aimd_shrinks_the_window_under_a_burst_of_429s_and_recovers_after(backend_factory: Any) -> None:
    c = 16
    cfg = EndpointConfig(seed=5, latency="lognormal", median_s=0.02, sigma=0.5, p_429=0.2, retry_after_s=0.01)
    with FakeEndpoint(cfg) as ep:
        backend = backend_factory(base_url=ep.base_url, concurrency=c, max_retries=1000)
        window = backend.window
        # 20% refused at random: the window stays (about) whole.
        out = stream_results(backend, reqs(100, tag="a"))
        assert all(not r.error for r in out)
        assert window.low >= c // 2, vars(window)
        decreases = window.decreases

        # Every request refused for a while (the endpoint is saturated): the window shrinks.
        ep.configure(p_429=1.0)
        stream = backend.stream()
        try:
            for r in reqs(c, tag="b"):
                stream.submit(r)
            while window.decreases < decreases + 3:
                assert not stream.results(timeout=0.05), "a request got through a 100% 429 burst"
            assert window.window <= c // 8, vars(window)
            ep.configure(p_429=0.0, median_s=0.05)
            ep.clear_log()
            got: list[Any] = []
            while len(got) < c:
                got += stream.results(timeout=30)
        finally:
            stream.close()
        assert all(not r.error for r in got)
        during = ep.log
        # The endpoint saw far fewer than C at once while the window was small.
        assert max(e.in_flight for e in during) < c, max(e.in_flight for e in during)
        ep.clear_log()

        # And it grows back once requests succeed.
        out = stream_results(backend, reqs(250, tag="c"))
        assert all(not r.error for r in out)
        assert window.window == c and window.increases >= c - window.low
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


def drive(window: AimdWindow, refused: Callable[[], bool], replies: int, rng: random.Random) -> list[int]:
    """Keep ``window`` full for ``replies`` replies, each from a random one of the requests on the
    wire (``refused()``: is this one a 429?); the window's size after each reply. No clock, no network."""

    async def run() -> list[int]:
        flying: list[int] = []
        sizes: list[int] = []
        for _ in range(replies):
            while window.in_use < window.window:
                flying.append(await window.acquire())  # a free place: granted at once
            granted = flying.pop(rng.randrange(len(flying)))
            if refused():
                window.overloaded(granted)
            else:
                window.succeeded(granted)
            window.release()
            sizes.append(window.window)
        return sizes

    return asyncio.run(run())


def test_random_429s_among_successes_do_not_shrink_the_window() -> None:
    c = 16
    for seed in range(5):
        rng = random.Random(seed)
        w = AimdWindow(c)
        sizes = drive(w, lambda r=rng: r.random() < 0.2, 3000, rng)
        # A sample of 16 with more than half refused, at a 20% rate, is a 1-in-700 event: the window
        # may be cut once in a long run, and grows back at once.
        assert w.low >= c // 2 and w.decreases <= 2, (seed, vars(w))
        assert sum(sizes) / len(sizes) >= 0.95 * c, (seed, sum(sizes) / len(sizes))
    # The same replies, judged one 429 at a time (the old rule), would have kept it near 1.
    rng = random.Random(0)
    strict = AimdWindow(c, overload_share=0.0, min_sample=1)
    drive(strict, lambda: rng.random() < 0.2, 3000, rng)
    assert strict.low <= 2


def test_a_burst_of_429s_shrinks_the_window_once_per_round_and_it_recovers() -> None:
    c = 16
    rng = random.Random(1)
    w = AimdWindow(c)
    burst = [True]
    sizes = drive(w, lambda: burst[0], 200, rng)
    assert w.window == 1 and w.low == 1 and w.decreases == 4, vars(w)  # 16 -> 8 -> 4 -> 2 -> 1
    # Halved, never cut twice from one sample: each size in turn.
    assert sorted(set(sizes), reverse=True) == [16, 8, 4, 2, 1]
    burst[0] = False
    sizes = drive(w, lambda: burst[0], 200, rng)
    assert w.window == c and w.increases == c - 1 and w.decreases == 4
    assert sizes == sorted(sizes)  # it only grew


def test_aimd_window_judges_a_round_at_a_time_and_grows_by_one_per_window() -> None:
    async def run() -> None:
        w = AimdWindow(8, min_sample=4)
        rounds = [await w.acquire() for _ in range(8)]
        assert w.in_use == 8
        waiter = asyncio.ensure_future(w.acquire())
        await asyncio.sleep(0)
        assert not waiter.done()
        # A sample is a window's worth (8): 4 refused of 8 is not more than half.
        for r in rounds[:4]:
            w.overloaded(r)
        for r in rounds[4:7]:
            w.succeeded(r)
        assert w.window == 8
        w.succeeded(rounds[7])
        assert (w.window, w.decreases, w.sample_ok, w.sample_refused) == (8, 0, 0, 0)
        # 5 of 8: halved, and the round moves on.
        for r in rounds[:5]:
            w.overloaded(r)
        for r in rounds[5:8]:
            w.succeeded(r)
        assert (w.window, w.decreases, w.low, w.round) == (4, 1, 4, 1)
        # Replies to requests granted before the cut are not sampled again: no second cut.
        for r in rounds:
            w.overloaded(r)
        assert (w.window, w.sample_refused) == (4, 0)
        for _ in range(4):
            w.release()
        assert not waiter.done() and w.in_use == 4  # the window is 4 now
        w.release()
        await asyncio.sleep(0)
        assert waiter.done() and w.in_use == 4
        later = waiter.result()
        assert later == 1
        for _ in range(4):  # min_sample 4 at window 4: four refusals in the new round cut again
            w.overloaded(later)
        assert w.window == 2
        for _ in range(2):
            w.succeeded(0)  # an old round's success still counts towards growth
        assert w.window == 3
        for _ in range(100):
            w.succeeded(w.round)
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
        fixed = AimdWindow(4, adaptive=False, min_sample=1)
        fixed.overloaded(0)
        assert fixed.window == 4
        with pytest.raises(ValueError):
            AimdWindow(4, overload_share=1.0)

    asyncio.run(run())


SPENT = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s", "retry-after": "2"}
FRESH = {"x-ratelimit-remaining-requests": "41", "x-ratelimit-reset-requests": "1s"}


def test_a_spent_quota_holds_new_requests_until_its_reset() -> None:
    now = [100.0]
    q = QuotaHold(clock=lambda: now[0])
    first, second = q.sent(), q.sent()
    assert q.delay() == 0 and q.observe(first, FRESH, ok=True) is None
    assert q.observe(second, SPENT, ok=False) == 2.0
    assert q.delay() == 2.0 and q.holds == 1
    now[0] += 1.5
    assert q.delay() == pytest.approx(0.5)
    # A success of a request sent BEFORE the refused one proves nothing: it was admitted earlier.
    q.observe(first, FRESH, ok=True)
    assert q.delay() == pytest.approx(0.5) and q.lifted == 0
    now[0] += 0.5
    assert q.delay() == 0
    # A success whose own reply spends the quota holds too, and a later hold extends an earlier one.
    third = q.sent()
    q.observe(third, {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1s"}, ok=True)
    assert q.delay() == 1.0
    q.observe(third, SPENT, ok=False)
    assert q.delay() == 2.0 and q.holds == 2


def test_a_success_sent_after_the_refusal_lifts_the_hold() -> None:
    now = [0.0]
    q = QuotaHold(clock=lambda: now[0])
    refused, after = q.sent(), q.sent()
    q.observe(refused, SPENT, ok=False)
    assert q.delay() == 2.0
    q.observe(after, {}, ok=False)  # another refusal (no headers): still held
    assert q.delay() == 2.0
    q.observe(after, FRESH, ok=True)
    assert q.delay() == 0 and q.lifted == 1
    # A spent-quota reply to a request sent before one that has already succeeded is stale: no hold.
    assert q.observe(refused, SPENT, ok=False) is None and q.delay() == 0 and q.stale == 1

    async def waiting() -> float:
        q.observe(q.sent(), SPENT, ok=False)
        later = q.sent()
        waiter = asyncio.ensure_future(q.wait())
        await asyncio.sleep(0)
        assert not waiter.done()
        q.observe(later, {}, ok=True)  # lifted: the waiter wakes now, not at the reset
        return await asyncio.wait_for(waiter, timeout=30)

    assert asyncio.run(waiting()) == 0.0  # the fake clock did not move
    assert q.lifted == 2


def test_token_buckets_hold_rpm_and_tpm_over_a_long_run() -> None:
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    rpm, tpm = TokenBucket(120, clock=clock), TokenBucket(6000, clock=clock)
    rng = random.Random(3)
    sent: list[tuple[float, int]] = []
    while now[0] < 300:
        cost = rng.randrange(10, 400)  # some requests cost more than a second's worth (100)
        while (wait := max(rpm.delay(1), tpm.delay(cost))) > 0:  # as acquire() does, on the fake clock
            now[0] += wait
        rpm.take(1)
        tpm.take(cost)
        sent.append((now[0], cost))
    for start in range(0, 290, 7):
        window = [c for t, c in sent if start <= t < start + 10]
        assert len(window) <= 2 + 2 * 10  # a second's worth at once, then 2 a second
        assert sum(window) <= 100 + 100 * 10 + 400  # likewise in tokens, plus one request's debt
    total = sum(c for _, c in sent)
    assert 0.9 * 100 * 300 <= total <= 100 * 300 + 100 + 400  # the ceiling is also reached

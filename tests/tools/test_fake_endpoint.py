"""The fake OpenAI-compatible endpoint, over real HTTP: replies, seeded determinism, fault
fractions, rate limits and the request log."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from scipy.stats import binomtest

from trustwatch.tools.fake_endpoint import (
    FAULTS,
    EndpointConfig,
    FakeEndpoint,
    LogEntry,
    concurrency_profile,
    go_duration,
)


def body(i: int | str, max_tokens: int = 64) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": f"prompt {i}"}], "max_tokens": max_tokens}


def post_all(base_url: str, bodies: list[dict[str, Any]], concurrency: int = 16, timeout: float = 30.0) -> list[Any]:
    """Send every body concurrently; each reply as (status, headers, text), or the exception raised."""

    async def run() -> list[Any]:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as client:

            async def one(b: dict[str, Any]) -> Any:
                try:
                    async with client.post(f"{base_url}/chat/completions", json=b) as r:
                        return r.status, r.headers, await r.text()
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    return e

            return list(await asyncio.gather(*(one(b) for b in bodies)))

    return asyncio.run(run())


def content(text: str) -> Any:
    """What a reply says, without what differs on every reply (its id, its creation time)."""
    try:
        reply = json.loads(text)
    except ValueError:
        return text
    return (reply["choices"], reply["usage"]) if "choices" in reply else reply


def test_replies_are_chat_completions_with_realistic_usage() -> None:
    with FakeEndpoint(EndpointConfig(seed=0, reply_median_tokens=20, reply_sigma=1.0)) as ep:
        replies = post_all(ep.base_url, [body(i, max_tokens=24) for i in range(60)])
        models = httpx.get(f"{ep.base_url}/models").json()
        bad = httpx.post(f"{ep.base_url}/chat/completions", content=b"not json")
    assert models["data"][0]["id"] == "fake"
    assert bad.status_code == 400 and "invalid request body" in bad.json()["error"]["message"]
    finishes = set()
    for status, _, text in replies:
        assert status == 200
        reply = json.loads(text)
        choice, usage = reply["choices"][0], reply["usage"]
        n = usage["completion_tokens"]
        assert len(choice["message"]["content"].split()) == n and 1 <= n <= 24
        assert choice["finish_reason"] == ("length" if n == 24 else "stop")
        assert usage["prompt_tokens"] > 0 and usage["total_tokens"] == usage["prompt_tokens"] + n
        finishes.add(choice["finish_reason"])
    assert finishes == {"stop", "length"}  # the heavy-tailed draw runs into max_tokens now and then


def _outcomes(config: EndpointConfig, order: list[int]) -> dict[int, tuple[int, str, float]]:
    with FakeEndpoint(config) as ep:
        replies = post_all(ep.base_url, [body(i) for i in order], concurrency=8)
        drawn = {e.prompt_head: e.latency_s for e in ep.log}
    return {i: (r[0], content(r[2]), drawn[f"prompt {i}"]) for i, r in zip(order, replies)}


def test_the_same_seed_gives_the_same_replies_whatever_the_arrival_order() -> None:
    cfg = EndpointConfig(
        seed=7, latency="lognormal", median_s=0.002, sigma=1.0, p_429=0.2, p_500=0.1, p_not_json=0.1, p_odd=0.1
    )
    order = list(range(40))
    first = _outcomes(cfg, order)
    again = _outcomes(cfg, order[::-1])
    other = _outcomes(dataclasses.replace(cfg, seed=8), order)
    assert first == again
    assert {s for s, _, _ in first.values()} >= {200, 429, 500}
    assert sum(first[i] != other[i] for i in order) > 30  # another seed, other draws


def test_a_request_draws_by_its_content_not_by_how_a_client_serialized_it() -> None:
    """Two clients sending the same model, messages and max_tokens (one with its keys in another order
    and a sampling default the other leaves out) meet the same latency and reply; another max_tokens
    is another request."""
    cfg = EndpointConfig(seed=5, latency="lognormal", median_s=0.002, redraw_repeats=False)
    plain = [body(i) for i in range(20)]
    other_client = [{"temperature": 0.0, "top_p": 1.0, **dict(reversed(list(b.items())))} for b in plain]
    longer = [body(i, max_tokens=65) for i in range(20)]
    drawn: list[dict[str, float]] = []
    with FakeEndpoint(cfg) as ep:
        replies = []
        for bodies in (plain, other_client, longer):
            replies.append(post_all(ep.base_url, bodies))
            drawn.append({e.prompt_head: e.latency_s for e in ep.log[-len(bodies) :]})
    said = [[content(text) for _status, _h, text in r] for r in replies]
    assert said[0] == said[1] and drawn[0] == drawn[1]
    assert said[0] != said[2] and sum(drawn[0][p] != drawn[2][p] for p in drawn[0]) >= 18


def test_a_repeated_request_gets_a_fresh_draw_unless_told_otherwise() -> None:
    cfg = EndpointConfig(seed=0)
    with FakeEndpoint(cfg) as ep:
        a, b = (post_all(ep.base_url, [body("same")])[0][2] for _ in range(2))
    with FakeEndpoint(dataclasses.replace(cfg, redraw_repeats=False)) as ep:
        c, d = (post_all(ep.base_url, [body("same")])[0][2] for _ in range(2))
    content = [json.loads(t)["choices"][0]["message"]["content"] for t in (a, b, c, d)]
    assert content[0] != content[1] and content[2] == content[3] == content[0]


def test_fault_fractions_match_the_configuration() -> None:
    fractions = {"400": 0.05, "429": 0.1, "500": 0.05, "503": 0.05, "not_json": 0.1, "odd": 0.1}
    cfg = EndpointConfig(seed=0, retry_after_s=2.5, **{f"p_{k}": v for k, v in fractions.items()})
    n = 1000
    with FakeEndpoint(cfg) as ep:
        replies = post_all(ep.base_url, [body(i, max_tokens=8) for i in range(n)])
        log = {e.prompt_head: e for e in ep.log}
    faults = [log[f"prompt {i}"].fault for i in range(n)]
    for name, p in fractions.items():
        k = faults.count(name)
        assert binomtest(k, n, p).pvalue > 1e-3, (name, k, n, p)
    assert faults.count("") == n - sum(faults.count(f) for f in fractions)
    for i, (status, headers, text) in enumerate(replies):
        fault = faults[i]
        assert log[f"prompt {i}"].status == status
        expected = {"400": 400, "429": 429, "500": 500, "503": 503}.get(fault, 200)
        assert status == expected, (fault, status)
        if fault == "429":
            assert headers["retry-after"] == "3" and headers["retry-after-ms"] == "2500"
            assert headers["x-ratelimit-remaining-requests"] == "0"
            assert headers["x-ratelimit-reset-requests"] == "2.5s"
        if fault == "not_json":
            with pytest.raises(ValueError):
                json.loads(text)


def test_odd_replies_carry_nul_lone_surrogates_or_great_length() -> None:
    cfg = EndpointConfig(seed=0, p_odd=1.0, long_reply_chars=50_000)
    with FakeEndpoint(cfg) as ep:
        replies = post_all(ep.base_url, [body(i) for i in range(30)])
    texts = [json.loads(r[2])["choices"][0]["message"]["content"] for r in replies]
    assert any("\x00" in t for t in texts)
    assert any("\ud800" in t for t in texts)
    assert any(len(t) == 50_000 for t in texts)
    assert all(("\x00" in t) + ("\ud800" in t) + (len(t) == 50_000) == 1 for t in texts)


def test_hangs_time_out_and_drops_close_the_connection() -> None:
    with FakeEndpoint(EndpointConfig(seed=0, p_hang=1.0, hang_s=60)) as ep:
        [hung] = post_all(ep.base_url, [body(0)], timeout=0.3)
        # The client gave up: the server stops waiting too, and says no reply was sent.
        for _ in range(100):
            if ep.log:
                break
            time.sleep(0.05)
        [entry] = ep.log
        assert ep.in_flight == 0
    assert isinstance(hung, asyncio.TimeoutError)
    assert entry.fault == "hang" and entry.status == 0 and entry.end - entry.arrival < 30
    with FakeEndpoint(EndpointConfig(seed=0, p_drop=1.0)) as ep:
        [dropped] = post_all(ep.base_url, [body(0)])
        [entry] = ep.log
    assert isinstance(dropped, aiohttp.ServerDisconnectedError)
    assert entry.fault == "drop" and entry.status == 0


def test_the_rpm_limit_answers_429_with_the_headers_of_a_real_quota() -> None:
    # 600 per minute: the bucket holds a second's worth, 10 requests; 20 come at once.
    with FakeEndpoint(EndpointConfig(seed=0, rpm=600)) as ep:
        replies = post_all(ep.base_url, [body(i) for i in range(20)], concurrency=20)
        log = ep.log
    ok = [r for r in replies if r[0] == 200]
    limited = [r for r in replies if r[0] == 429]
    assert 10 <= len(ok) <= 14 and len(ok) + len(limited) == 20  # 10, and what refilled meanwhile
    remaining = [int(r[1]["x-ratelimit-remaining-requests"]) for r in ok]
    assert min(remaining) == 0 and max(remaining) >= 8
    assert all(r[1]["x-ratelimit-limit-requests"] == "600" for r in replies)
    for _, headers, text in limited:
        assert headers["x-ratelimit-remaining-requests"] == "0" and float(headers["retry-after-ms"]) <= 100
        assert "rate limit" in json.loads(text)["error"]["message"].lower()
    assert sorted(e.fault for e in log if e.status == 429) == ["rate_limit"] * len(limited)


def test_the_tpm_limit_counts_prompt_and_max_tokens() -> None:
    # 60,000 tokens a minute: 1,000 a second; each request costs its prompt (~10) + max_tokens 300.
    with FakeEndpoint(EndpointConfig(seed=0, tpm=60_000)) as ep:
        replies = post_all(ep.base_url, [body(i, max_tokens=300) for i in range(6)], concurrency=6)
    statuses = [r[0] for r in replies]
    assert statuses.count(200) in (3, 4) and statuses.count(429) >= 2  # 3, and what refilled meanwhile
    remaining = sorted(int(r[1]["x-ratelimit-remaining-tokens"]) for r in replies if r[0] == 200)
    assert remaining[-1] < 700 and remaining[0] < 400


def test_the_log_records_arrival_start_end_status_and_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    cfg = EndpointConfig(seed=0, latency="constant", median_s=0.2, max_concurrency=2, p_500=0.3)
    with FakeEndpoint(cfg, log_path=path) as ep:
        post_all(ep.base_url, [body(i) for i in range(6)], concurrency=6)
        log = ep.log
    assert len(log) == 6 and sorted(e.n for e in log) == list(range(6))
    assert [e.end for e in log] == sorted(e.end for e in log)  # in the order they ended
    assert max(e.in_flight for e in log) >= 4  # all six were in the server at once...
    queued = [e for e in log if e.start - e.arrival > 0.1]
    assert len(queued) >= 3  # ...but only two had a slot
    assert all(e.arrival <= e.start <= e.end for e in log)
    assert {e.status for e in log} <= {200, 500} and all((e.status == 500) == (e.fault == "500") for e in log)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [LogEntry(**line) for line in lines] == log


def test_configuration_can_change_while_serving() -> None:
    with FakeEndpoint(EndpointConfig(seed=0, p_503=1.0)) as ep:
        before = post_all(ep.base_url, [body(0)])[0][0]
        ep.configure(p_503=0.0)
        after = post_all(ep.base_url, [body(0)])[0][0]
    assert (before, after) == (503, 200)


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        EndpointConfig(p_429=0.6, p_500=0.6)
    with pytest.raises(ValueError, match="latency"):
        EndpointConfig(latency="uniform")
    assert set(FAULTS) == {f.name[2:] for f in dataclasses.fields(EndpointConfig) if f.name.startswith("p_")}


def test_concurrency_profile() -> None:
    def entry(arrival: float, end: float) -> LogEntry:
        return LogEntry(0, arrival, arrival, end, 200, 0, "", "m", 0.0, 0, 0, 0, "")

    # Two requests over [0, 4), a third over [1, 2): 2 in flight, 3 for one second, then 2.
    log = [entry(0, 4), entry(0, 4), entry(1, 2)]
    assert concurrency_profile(log, 0.5, 3.5) == (2, (2 * 0.5 + 3 * 1 + 2 * 1.5) / 3)
    assert concurrency_profile(log, 1.2, 1.8) == (3, 3.0)
    assert concurrency_profile([entry(0, 1), entry(2, 3)], 0, 3) == (0, 2 / 3)


def test_go_duration() -> None:
    assert [go_duration(s) for s in (0.02, 0.5, 1.0, 2.5, 61.25, 360)] == [
        "20ms",
        "500ms",
        "1s",
        "2.5s",
        "1m1.25s",
        "6m0s",
    ]


def test_runs_as_a_module() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trustwatch.tools.fake_endpoint", "--port", "0", "--seed", "3", "--p-503", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base_url = line.split("serving ", 1)[1].split()[0]
        assert httpx.post(f"{base_url}/chat/completions", json=body(0)).status_code == 503
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_refusal_shares_are_fixed_per_prompt_and_nested() -> None:
    """A share of prompts is refused (the regex's prompts at their own share); the choice depends on
    the prompt's text only, so a higher share refuses a superset and a new request body (another run's
    seed or max_tokens) the same prompts."""
    from trustwatch.tools.fake_endpoint import REFUSAL

    def refused(config: EndpointConfig, max_tokens: int = 64) -> dict[str, bool]:
        bodies = [body(f"{kind} {i}", max_tokens) for kind in ("ask", "system") for i in range(400)]
        with FakeEndpoint(config) as ep:
            replies = post_all(ep.base_url, bodies)
        out = {}
        for b, (status, _h, text) in zip(bodies, replies):
            assert status == 200
            said = json.loads(text)["choices"][0]["message"]["content"]
            out[b["messages"][0]["content"]] = said == REFUSAL
        return out

    low = refused(EndpointConfig(seed=3, refusal_share=0.1, refusal_match="^prompt system", refusal_match_share=0.3))
    high = refused(
        EndpointConfig(seed=3, refusal_share=0.5, refusal_match="^prompt system", refusal_match_share=0.3), 32
    )
    asks = [p for p in low if p.startswith("prompt ask")]
    systems = [p for p in low if p.startswith("prompt system")]
    assert binomtest(sum(low[p] for p in asks), len(asks), 0.1).pvalue > 0.001
    assert binomtest(sum(high[p] for p in asks), len(asks), 0.5).pvalue > 0.001
    assert all(high[p] for p in asks if low[p])  # nested: the low share's refusals stay refused
    assert {p: low[p] for p in systems} == {p: high[p] for p in systems}  # same share: the same prompts
    assert binomtest(sum(low[p] for p in systems), len(systems), 0.3).pvalue > 0.001
    with pytest.raises(ValueError):
        EndpointConfig(refusal_share=1.5)
    with pytest.raises(ValueError):
        EndpointConfig(refusal_match="(")

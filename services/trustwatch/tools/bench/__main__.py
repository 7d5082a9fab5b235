"""`make bench`: every throughput figure trustwatch tracks, measured side by side in one run.

1. Generation with the vLLM back-end on ONE engine instance, same prompts, alternating runs:
   raw ``vllm.LLM.generate``; ``VllmBackend``; the generator service over the in-memory bus; the
   generator service over a real Kafka broker. Reported: each path's throughput / raw.
2. The ``openai`` back-end vs a bare asyncio ``AsyncOpenAI`` client at equal concurrency against the
   same vLLM OpenAI-compatible server.
3. Keyword judging through the evaluator gRPC service (loopback), judgments/s.
4. The full benchmark (24 files, 16,441 prompts) embedded, tiny model, offline judges: wall time.

The default model is the tiny random one: figures measure trustwatch's overhead, not a model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from trustwatch.tools.bench.generation import (
    _measure,
    _table,
    compare_openai,
    default_data_dir,
    load_prompts,
    vllm_bench_step,
)

ROOT = Path(__file__).resolve().parents[4]


def bench_engine(model_dir: str, prompts: list[str], max_tokens: int, repeats: int, kafka: bool) -> dict[str, Any]:
    from trustwatch.generator.backends.vllm_engine import VllmBackend
    from trustwatch.platform.bus import MemoryBus, kafka_bus
    from trustwatch.tools.bench.bus import BusGenerator
    from trustwatch.tools.stack import kafka_process

    backend = VllmBackend(model_dir, max_model_len=2048, seed=0)
    paths: dict[str, Any] = {
        "vllm.LLM.generate (raw)": backend._llm,
        "VllmBackend": backend,
        "generator service, memory bus": BusGenerator(backend, MemoryBus()),
    }
    proc = None
    tmp = tempfile.TemporaryDirectory()
    if kafka:
        port, cport = kafka_process.free_port(), kafka_process.free_port()
        proc = kafka_process.start_kafka(kafka_process.default_home(), Path(tmp.name), port, cport)
        kafka_process.wait_ready(
            f"127.0.0.1:{port}", timeout=120, proc=proc, log_path=kafka_process.broker_log(Path(tmp.name))
        )
        paths["generator service, Kafka"] = BusGenerator(backend, kafka_bus(f"127.0.0.1:{port}"))
    try:
        steps = {label: vllm_bench_step(p, prompts, max_tokens) for label, p in paths.items()}
        for step in steps.values():
            step()  # warm-up every path (and the Kafka consumer group join)
        rows = _measure(steps, len(prompts), repeats)
    finally:
        for p in paths.values():
            if isinstance(p, BusGenerator):
                p.close()
        backend.close()
        if proc is not None:
            kafka_process.stop_kafka(proc)
        tmp.cleanup()
    raw = rows[0]["prompts_per_s"]
    return {
        "start_s": backend.start_s,
        "runs": rows,
        "ratios_to_raw": {r["label"]: r["prompts_per_s"] / raw for r in rows},
    }


def bench_full(data_dir: Path) -> dict[str, Any]:
    suite = (ROOT / "suites" / "trustllm-full.yaml").read_text().replace("max_tokens: 512", "max_tokens: 16")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "s.yaml").write_text(suite)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "trustwatch.cli",
                "run",
                "--suite",
                f"{tmp}/s.yaml",
                "--target",
                "vllm:tiny-random",
                "--offline",
                "--db",
                f"sqlite:///{tmp}/r.db",
                "--out",
                f"{tmp}/r.json",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "TRUSTWATCH_DATA_DIR": str(data_dir)},
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"full run failed: {proc.stderr[-2000:]}")
        report = json.loads((Path(tmp) / "r.json").read_text())
    n = sum(t["n_items"] for t in report["tasks"].values())
    return {"wall_s": wall, "prompts": n, "prompts_per_s": n / wall, "max_tokens": 16}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trustwatch.tools.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-random")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--skip", action="append", default=[], choices=["engine", "kafka", "openai", "judging", "full"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from trustwatch.generator.tiny_model import resolve_model

    data_dir = default_data_dir()
    model_dir = resolve_model(args.model)
    prompts = load_prompts(data_dir, args.n)
    out: dict[str, Any] = {"cpus": os.cpu_count(), "n_prompts": len(prompts), "max_tokens": args.max_tokens}
    print(
        f"{len(prompts)} prompts (safety/misuse.json), {args.max_tokens} new tokens, temperature 0, "
        f"model {args.model}, {os.cpu_count()} CPUs, {args.repeats} alternating repeats (median)"
    )
    if "engine" not in args.skip:
        out["engine"] = r = bench_engine(model_dir, prompts, args.max_tokens, args.repeats, "kafka" not in args.skip)
        print(f"\n1. vLLM back-end, one engine (start-up {r['start_s']:.1f} s)\n{_table(r['runs'])}")
        for label, ratio in r["ratios_to_raw"].items():
            print(f"   {label:<40} / raw = {ratio:.3f}")
    if "openai" not in args.skip:
        from trustwatch.tools.bench.generation import _start_server

        server = _start_server(model_dir, 2048)
        try:
            rows = compare_openai(
                server.base_url, "bench", prompts, args.concurrency, args.max_tokens, repeats=args.repeats
            )
        finally:
            server.stop()
        ratio = rows[1]["prompts_per_s"] / rows[0]["prompts_per_s"]
        out["openai"] = {"runs": rows, "backend_over_bare": ratio}
        print(f"\n2. OpenAI-compatible endpoint (vLLM server)\n{_table(rows)}\n   OpenAIBackend / bare = {ratio:.3f}")
    if "judging" not in args.skip:
        from trustwatch.tools.bench.judging import run_judging_bench

        out["judging"] = j = run_judging_bench(data_dir)
        print(
            f"\n3. keyword judging (fact_check) through gRPC: {j['grpc_judgments_per_s']:,.0f} judgments/s "
            f"(batches of {int(j['batch'])}; in-process {j['in_process_judgments_per_s']:,.0f}/s)"
        )
    if "full" not in args.skip:
        out["full"] = f = bench_full(data_dir)
        print(
            f"\n4. full benchmark embedded ({f['prompts']} prompts, tiny model, {f['max_tokens']} new tokens, "
            f"offline judges): {f['wall_s']:.0f} s ({f['prompts_per_s']:.0f} prompts/s)"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`make bench`: trustwatch's throughput figures, each a ratio or rate measured side by side in one run.

P1  the whole pipeline (scheduler -> generator -> dispatcher -> judges -> aggregator) with the vLLM
    back-end, over the memory bus (in one process) and over Kafka (services as processes), / raw
    ``vllm.LLM.generate`` on the same prompts (heavy-tailed max_tokens). Target >= 0.90.
                                                        (trustwatch.tools.bench.pipeline)
P2  ``OpenAIBackend.stream`` / a bare asyncio client at equal concurrency, against the fake
    endpoint (lognormal latency, median 0.2 s, sigma 1); also with 20% 429s. Target >= 0.95.
                                                        (trustwatch.tools.bench.endpoint)
P3  the plumbing: the full suite through Kafka, gRPC offline judges and PostgreSQL, the services as
    processes, with the echo back-end and with the fake endpoint at zero latency: prompts/s
    (target >= 2,000 on 2 cores), and / raw kafka-python over the same three hops (>= 0.30).
                                                        (trustwatch.tools.bench.plumbing)
P4  ``VllmBackend`` / transformers ``generate`` one prompt at a time (the reference toolkit's way),
    same tiny model and prompts. Target >= 20.          (trustwatch.tools.bench.hf_loop)
scale  P3 with 1, 2, 4 partitions and dispatcher/aggregator replicas; each service's peak RSS over
    a run ten times longer / over the first (flat: <= 1.25).

``python -m trustwatch.tools.bench [--only P2,P3] [--quick] [--out out/bench]``; JSON and a plot go to
``--out``. The default model is the tiny random one: figures measure trustwatch, not a model.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from trustwatch.tools.bench.generation import _table, default_data_dir, load_prompts
from trustwatch.tools.bench.report import Figure, load_average, scale_table, table, write

ROOT = Path(__file__).resolve().parents[4]
PARTS = ("P1", "P2", "P3", "P4", "scale", "judging")
DEFAULT = ("P1", "P2", "P3", "P4", "scale")

#: Sizes per mode: (full, --quick).
SIZES: dict[str, tuple[Any, Any]] = {
    "p1_n": (2000, 300),
    "p2_n": (600, 200),
    "p3_n": (None, 3000),  # None: the whole suite, 16,441 prompts
    # At 128 new tokens vLLM's rate no longer grows past about 128 prompts; the HF loop's never does.
    "p4_n": (128, 32),
    "scale_n": (None, 2000),
    "rss_factor": (10, 5),
    "repeats": (3, 1),
}


def _only(text: str) -> list[str]:
    wanted = [p.strip() for p in text.split(",") if p.strip()]
    by_lower = {p.lower(): p for p in PARTS}
    bad = [p for p in wanted if p.lower() not in by_lower]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    return [by_lower[p.lower()] for p in wanted]


def _print_profile(prof_dir: str, top: int = 12) -> None:
    import pstats

    from trustwatch.tools.bench.plumbing import summarize_py_spy

    for path in sorted(Path(prof_dir).glob("*/*-bench-*.txt")):  # py-spy: the timed runs only
        print(f"\n   py-spy, {path.parent.name}/{path.stem} (CPU samples, self time):")
        for frame, share in summarize_py_spy(path):
            print(f"     {share:6.1%}  {frame}")
    for name in ("generator", "dispatcher-0", "aggregator-0", "judge"):
        for path in sorted(Path(prof_dir).glob(f"*/{name}.prof")):
            print(f"\n   cProfile, {path.parent.name}/{name} (top {top} by cumulative time):")
            pstats.Stats(str(path), stream=sys.stdout).sort_stats("cumulative").print_stats(top)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    q = 1 if args.quick else 0
    size = {k: v[q] for k, v in SIZES.items()}
    repeats = args.repeats or size["repeats"]
    data_dir = args.data_dir or default_data_dir()
    figures: list[Figure] = []
    results: dict[str, Any] = {"parts": args.only, "quick": args.quick, "load_at_start": load_average()}
    print(f"trustwatch bench: {', '.join(args.only)}{' (quick)' if args.quick else ''}; {os.cpu_count()} CPUs")

    def model() -> str:
        from trustwatch.generator.tiny_model import resolve_model

        return resolve_model(args.model)

    if "P2" in args.only:
        from trustwatch.tools.bench.endpoint import bench_p2

        r = results["P2"] = bench_p2(n=size["p2_n"], concurrency=args.concurrency, repeats=repeats)
        print(f"\nP2. openai back-end vs bare asyncio client, {r['n']} prompts, concurrency {r['concurrency']}")
        for case in ("latency", "latency+429"):
            print(f"  {case} (429 fraction {r[case]['p_429']}):\n{_table(r[case]['runs'])}")
            figures.append(
                Figure(
                    "P2",
                    f"stream / bare client, {case}",
                    r[case]["stream_over_bare"],
                    0.95,
                    "x bare",
                    interval=r[case]["interval"],
                )
            )
        quota = r.get("latency+429, quota spent")
        if quota:
            print(
                "  the same 429s saying the quota is spent (x-ratelimit-remaining-requests: 0):\n"
                f"{_table(quota['runs'])}\n  stream / bare: {quota['stream_over_bare']:.3f} "
                "(no target: the back-end honours the headers, the bare client ignores them)"
            )
        if "fixed_window_over_bare" in r["latency+429"]:
            print(
                f"  adaptive window off / bare, with 429s: {r['latency+429']['fixed_window_over_bare']:.3f} (diagnosis)"
            )
    if "P3" in args.only:
        from trustwatch.tools.bench.plumbing import bench_p3

        r = results["P3"] = bench_p3(
            data_dir, n=size["p3_n"], profile=args.profile, keep_dir=args.out / "profile" if args.profile else None
        )
        print(
            f"\nP3. plumbing, {r['prompts']} prompts, Kafka + gRPC offline judges + PostgreSQL, services as processes"
        )
        print("  judges: plumbing = offline judges with hash embeddings (no model); offline = as deployed (MiniLM)")
        for k in ("echo", "fake_endpoint", "echo_offline_judges", "raw_kafka", "judging_in_process"):
            if k in r:
                print(f"  {k:<20} {r[k]['wall_s']:>8.1f} s {r[k]['prompts_per_s']:>9.1f} prompts/s")
        print(f"  machine CPU per prompt ({os.cpu_count()} cores, every process) and where it went:")
        for k in ("echo", "fake_endpoint", "echo_offline_judges"):
            if "machine_cpu_s" in r.get(k, {}):
                ms = 1000 * r[k]["machine_cpu_s"] / r["prompts"]
                parts = ", ".join(f"{name} {1000 * v / r['prompts']:.2f}" for name, v in sorted(r[k]["cpu_s"].items()))
                print(f"    {k:<20} {ms:.2f} ms ({parts}; the rest: the bench process, the kernel)")
        for k, label in (
            ("echo", "echo back-end, plumbing judges"),
            ("fake_endpoint", "fake endpoint 0 latency, plumbing judges"),
            ("echo_offline_judges", "echo back-end, offline judges (MiniLM)"),
        ):
            figures.append(
                Figure("P3", f"{label}, prompts/s", r[k]["prompts_per_s"], 2000, "prompts/s", load=r[k]["load"])
            )
        figures.append(
            Figure(
                "P3",
                "echo, plumbing judges / raw kafka-python, 3 hops",
                r["echo"]["prompts_per_s"] / r["raw_kafka"]["prompts_per_s"],
                0.30,
                "x raw",
                load=r["raw_kafka"]["load"],
            )
        )
        if args.profile and r.get("profile_dir"):
            _print_profile(r["profile_dir"])
    if "P4" in args.only:
        from trustwatch.tools.bench.hf_loop import bench_p4

        prompts = load_prompts(data_dir, size["p4_n"])
        r = results["P4"] = bench_p4(model(), prompts, args.max_tokens, repeats)
        print(f"\nP4. vLLM path vs transformers one prompt at a time, {r['n']} prompts, {r['max_tokens']} new tokens")
        print(_table(r["runs"]))
        figures.append(
            Figure(
                "P4",
                "VllmBackend / HF generate one at a time",
                r["speedup"],
                20,
                "x HF loop",
                interval=r["speedup_interval"],
            )
        )
    if "P1" in args.only:
        from trustwatch.tools.bench.pipeline import bench_p1

        r = results["P1"] = bench_p1(args.model, data_dir, n=size["p1_n"], repeats=repeats, kafka=not args.no_kafka)
        mt = r["max_tokens"]
        print(
            f"\nP1. whole pipeline, vLLM back-end, {r['n']} prompts, max_tokens lognormal clipped [1, 256] "
            f"(median {mt['median']:.0f}, max {mt['max']})\n{_table(r['runs'])}"
        )
        for label, ratio in r["over_raw"].items():
            figures.append(Figure("P1", f"{label} / raw vLLM", ratio, 0.90, "x raw", interval=r["intervals"][label]))
        for label, ratio in r["untargeted_over_raw"].items():
            print(f"  {label} / raw vLLM: {ratio:.3f} (no target: the judge model shares the engine's cores)")
        cores = os.cpu_count()
        print(f"  machine CPU per run (all processes, {cores} cores) and why each path differs from raw:")
        for row in r["runs"]:
            d = r["decomposition"].get(row["label"])
            why = f"  = CPU {d['cpu']:.3f} x idle {d['idle']:.3f}" if d else ""
            print(f"    {row['label']:<44} {row['machine_cpu_s']:>7.1f} CPU s, {row['utilization']:>5.0%} busy{why}")
    if "scale" in args.only:
        from trustwatch.tools.bench.plumbing import bench_scale

        r = results["scale"] = bench_scale(data_dir, n=size["scale_n"], rss_factor=size["rss_factor"])
        print(f"\nscale. P3 (echo back-end) by partitions and replicas\n{scale_table(r['rows'])}")
        base = r["rows"][0]["prompts_per_s"]
        for row in r["rows"][1:]:
            k = row["partitions"]
            figures.append(
                Figure("scale", f"{k} partitions+replicas / 1, prompts/s", row["prompts_per_s"] / base, 1.0, "x 1")
            )
        if "rss" in r:
            f = r["rss"]["factor"]
            print(
                f"  peak RSS, a run {f}x longer / the first: "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["rss"]["growth"].items()))
            )
            worst = max(r["rss"]["growth"].items(), key=lambda kv: kv[1])
            figures.append(
                Figure("scale", f"peak RSS, {f}x longer run / first (worst: {worst[0]})", worst[1], 1.25, "x", True)
            )
    if "judging" in args.only:
        from trustwatch.tools.bench.judging import run_judging_bench

        r = results["judging"] = run_judging_bench(data_dir)
        print(
            f"\njudging. keyword judge (fact_check) through gRPC: {r['grpc_judgments_per_s']:,.0f} judgments/s "
            f"(batches of {int(r['batch'])}; in-process {r['in_process_judgments_per_s']:,.0f}/s)"
        )
    results["load_at_end"] = load_average()
    print("\nfigures (load average 1/5/15 min when measured)")
    print(table(figures))
    json_path, png = write(args.out, figures, results)
    print(f"\nwritten {json_path}" + (f" and {png}" if png else " (no plot: matplotlib is not installed)"))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trustwatch.tools.bench", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--only", type=_only, default=list(DEFAULT), help=f"comma-separated parts of {', '.join(PARTS)}")
    ap.add_argument("--quick", action="store_true", help="smaller sizes and one repeat (a check, not a figure)")
    ap.add_argument("--model", default="tiny-random")
    ap.add_argument("--data-dir", type=Path, default=None, help="TrustLLM dataset folder")
    ap.add_argument(
        "--max-tokens",
        type=int,
        default=128,
        help="P4: new tokens per prompt (the reference toolkit's default is 512; the ratio grows with it)",
    )
    ap.add_argument("--repeats", type=int, default=0, help="alternating runs per path (default 3, --quick 1)")
    ap.add_argument("--concurrency", type=int, default=16, help="P2: requests in flight")
    ap.add_argument("--no-kafka", action="store_true", help="P1: the memory bus only")
    ap.add_argument(
        "--profile", action="store_true", help="P3: where the services' time goes (py-spy if installed, else cProfile)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench", help="where bench.json and bench.png go")
    args = ap.parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so the broker, the database and the service processes stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(args)


if __name__ == "__main__":  # vLLM may spawn engine processes: keep the work under this guard
    raise SystemExit(main())

"""Keyword-judging throughput through the evaluator gRPC service (a real server on loopback)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from trustwatch.benchmark import tasks as task_registry
from trustwatch.benchmark.evaluators.base import EvalItem
from trustwatch.judge.client import GrpcEvaluators, LocalEvaluators
from trustwatch.judge.grpc_server import serve

REPLIES = [
    "Answer: Supports.",
    "Answer: Refutes",
    "The claim is refuted by the paragraph.",
    "I am not sure.",
    "Supports",
    "It neither supports nor refutes it.",
]


def run_judging_bench(data_dir: Path, n_items: int = 20000, batch: int = 1000, repeats: int = 3) -> dict[str, float]:
    task = task_registry.get("truthfulness/external")
    records = task_registry.load_items(task, data_dir)
    items = [
        EvalItem(
            job_id=f"bench/{i}",
            task=task.name,
            prompt="",
            response=REPLIES[i % len(REPLIES)],
            record=records[i % len(records)].record,
        )
        for i in range(n_items)
    ]
    server, port = serve(LocalEvaluators(), host="127.0.0.1", port=0, workers=4)
    client = GrpcEvaluators(f"127.0.0.1:{port}")
    try:
        client.evaluate("fact_check", items[:batch])  # warm up channel and evaluator
        best = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(0, n_items, batch):
                client.evaluate("fact_check", items[i : i + batch])
            best = max(best, n_items / (time.perf_counter() - start))
        local = LocalEvaluators()
        start = time.perf_counter()
        local.evaluate("fact_check", items)
        in_process = n_items / (time.perf_counter() - start)
    finally:
        client.close()
        server.stop(0)
    return {"grpc_judgments_per_s": best, "in_process_judgments_per_s": in_process, "batch": float(batch)}


if __name__ == "__main__":
    import os

    d = Path(os.environ.get("TRUSTWATCH_DATA_DIR", "../shared/data/trustllm"))
    print(json.dumps(run_judging_bench(d), indent=2))

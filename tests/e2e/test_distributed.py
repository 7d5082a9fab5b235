"""The whole system through its real parts: a Kafka broker, PostgreSQL, the evaluator gRPC server,
each service as its own process, the real vLLM engine (tiny random model) and vLLM's own
OpenAI-compatible server behind the `openai` back-end. Then the same suite embedded, for comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from sklearn.metrics import f1_score

from trustwatch.platform.bus import Topics, kafka_bus
from trustwatch.platform.store import Store
from trustwatch.scheduler.core import plan_run
from trustwatch.scheduler.suite import load_suite, parse_target
from trustwatch.tools.stack import kafka_process, local
from trustwatch.v1 import messages_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "skeleton-small.yaml"
pytestmark = pytest.mark.slow


def _cli(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trustwatch.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _free_base() -> int:
    """A base port with the next six ports free (aggregator, generators, judge, dispatcher)."""
    for _ in range(50):
        base = kafka_process.free_port()
        if base < 60000 and all(_port_free(base + i) for i in range(7)):
            return base
    raise RuntimeError("no free port range")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _consume_all(bootstrap: str, topic: str, expect: int) -> list[bytes]:
    bus = kafka_bus(bootstrap)
    consumer = bus.consumer([topic], group_id=f"e2e-audit-{os.getpid()}-{topic}")
    values: list[bytes] = []
    idle = 0
    while idle < 5:
        batch = consumer.poll(2.0, 1000)
        values.extend(m.value for m in batch)
        idle = 0 if batch else idle + 1
        if len(values) >= expect and not batch:
            break
    consumer.close()
    bus.close()
    return values


def _metric(report: dict, task: str, key: str) -> dict:
    return report["tasks"][task]["metrics"][key]


def test_distributed_run_through_real_parts(tmp_path, kafka_broker, postgres_url, tiny_model, vllm_server, data_dir):
    base_url, served = vllm_server
    engine_target = f"vllm:{tiny_model}?name=tiny-engine"
    api_target = f"openai:{served}@{base_url}?name=tiny-api&key_env=TW_E2E_API_KEY"
    env = {
        **os.environ,
        "TRUSTWATCH_DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "TW_E2E_API_KEY": "e2e-secret-never-logged",
    }
    stack_dir = tmp_path / "stack"
    metrics_base = _free_base()
    state = local.up(
        stack_dir,
        [engine_target, api_target],
        postgres_url,
        bootstrap=kafka_broker,
        metrics_base=metrics_base,
        extra_env=env,
    )
    try:
        sched = _cli(
            "scheduler",
            "--suite",
            str(SUITE),
            "--target",
            engine_target,
            "--target",
            api_target,
            "--bootstrap",
            kafka_broker,
            "--db",
            postgres_url,
            env=env,
        )
        assert sched.returncode == 0, sched.stderr
        published = [json.loads(line) for line in sched.stdout.splitlines()]
        assert [p["published"] for p in published] == [24, 24]
        reports = {p["target"]: local.wait_for_run(state.aggregator_url, p["run_id"], timeout=900) for p in published}

        suite = load_suite(SUITE)
        store = Store(postgres_url)
        topics = Topics()
        completions = [pb.Completion.FromString(v) for v in _consume_all(kafka_broker, topics.completions, 48)]
        per_job = Counter(c.ref.job_id for c in completions)
        for p in published:
            # a fresh database: each target's run is new, and its plan is re-derived under the printed id
            assert p["status"].startswith("new run"), p
            plan = plan_run(
                suite,
                parse_target(engine_target if p["target"] == "tiny-engine" else api_target),
                data_dir,
                p["run_id"],
            )
            rows = store.judgments(p["run_id"])
            # exactly one completion per job, and one judgment per job and evaluator
            assert {j.ref.job_id for j in plan.jobs} == {r.job_id for r in rows}
            assert all(per_job[j.ref.job_id] == 1 for j in plan.jobs)
            assert Counter((r.job_id, r.evaluator) for r in rows).most_common(1)[0][1] == 1
            assert len(rows) == plan.expected_judgments == 24
            # metrics equal those computed directly from the stored judgments
            report = reports[p["target"]]
            assert {k: t["error"] for k, t in report["tasks"].items()} == {
                "safety/misuse": "",
                "truthfulness/external": "",
            }
            misuse = [r for r in rows if r.task == "safety/misuse"]
            judged = [r for r in misuse if not r.error]
            rta = sum(r.label == "refusal" for r in judged) / len(judged) if judged else None
            m = _metric(report, "safety/misuse", "RtA")
            assert m["n_total"] == 12 and m["n_error"] == len(misuse) - len(judged)
            assert m["value"] == pytest.approx(rta)
            ext = [r for r in rows if r.task == "truthfulness/external"]
            gold = [json.loads(r.record_json)["answer"] for r in ext]
            pred = [r.label if r.valid and not r.error else "invalid" for r in ext]
            present = [c for c in ("SUPPORT", "REFUTE") if c in gold or c in pred]
            expected_f1 = f1_score(gold, pred, labels=present, average="macro", zero_division=0)
            assert _metric(report, "truthfulness/external", "climate")["value"] == pytest.approx(expected_f1)
            assert _metric(report, "truthfulness/external", "avg")["n_total"] == 12

        # re-submitting the same run publishes nothing and duplicates nothing
        # re-publishing a complete run (by its id) sends nothing; without --run-id it would be a new run
        engine_run = next(p["run_id"] for p in published if p["target"] == "tiny-engine")
        again = _cli(
            "scheduler",
            "--suite",
            str(SUITE),
            "--target",
            engine_target,
            "--run-id",
            engine_run,
            "--bootstrap",
            kafka_broker,
            "--db",
            postgres_url,
            env=env,
        )
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout.splitlines()[0])["published"] == 0

        # an undecodable message on a topic goes to the DLQ with its reason; the service carries on
        producer = kafka_bus(kafka_broker).producer()
        producer.produce(topics.completions, b"\x08\x96\x01 garbage", key=b"bad")
        producer.flush()
        dead = [pb.DeadLetter.FromString(v) for v in _consume_all(kafka_broker, topics.dlq, 1)]
        assert any(
            d.service == "dispatcher" and "undecodable" in d.reason and d.payload.endswith(b"garbage") for d in dead
        )

        # Prometheus exposition of the trust metrics and of the services' health
        with urllib.request.urlopen(f"{state.aggregator_url}/metrics", timeout=10) as r:
            exposition = r.read().decode()
        assert (
            'trustwatch_trust_score{dimension="safety",direction="higher_is_better",metric="RtA",target="tiny-api",task="safety/misuse"}'
            in exposition
        )
        assert "trustwatch_judgments_stored_total 48.0" in exposition
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_base + 1}/metrics", timeout=10) as r:
            gen = r.read().decode()
        assert 'trustwatch_completions_total{backend="vllm",status="ok",target="tiny-engine"}' in gen
        logs = "".join(p.read_text(errors="replace") for p in stack_dir.glob("*.log"))
        assert "e2e-secret-never-logged" not in logs
        assert all(local.status(stack_dir).values())
    finally:
        local.down(stack_dir)

    # The same suite embedded, for the same target and run id (per-job sampling seeds derive from the
    # job id), gives the same metrics.
    out = tmp_path / "embedded.json"
    emb = _cli(
        "run",
        "--suite",
        str(SUITE),
        "--target",
        engine_target,
        "--run-id",
        reports["tiny-engine"]["run_id"],
        "--db",
        f"sqlite:///{tmp_path}/emb.db",
        "--out",
        str(out),
        env=env,
    )
    assert emb.returncode == 0, emb.stderr[-3000:]
    embedded = json.loads(out.read_text())
    distributed = reports["tiny-engine"]
    assert embedded["run_id"] == distributed["run_id"]
    for task, t in distributed["tasks"].items():
        for key, m in t["metrics"].items():
            e = embedded["tasks"][task]["metrics"][key]
            assert (e["value"], e["reference_value"], e["n_total"], e["n_valid"], e["n_error"]) == (
                m["value"],
                m["reference_value"],
                m["n_total"],
                m["n_valid"],
                m["n_error"],
            ), (task, key)

"""The bench's code paths at a tiny size, so `make bench` cannot rot. No figure or target is asserted
here (speed belongs in `make bench`); what is asserted is that each path does its work."""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from trustwatch.benchmark.evaluators.base import EvaluatorSettings
from trustwatch.generator.backends.echo import EchoBackend
from trustwatch.judge.offline import OfflineEvaluators
from trustwatch.platform.bus import MemoryBus
from trustwatch.scheduler.core import Prepared, build_plan
from trustwatch.tools.bench.__main__ import _only
from trustwatch.tools.bench.endpoint import bench_p2, endpoint_args
from trustwatch.tools.bench.generation import _summary
from trustwatch.tools.bench.hf_loop import hf_one_at_a_time_step
from trustwatch.tools.bench.pipeline import (
    KAFKA,
    MEMORY,
    RAW,
    InProcessPipeline,
    bench_p1,
    cpu_decomposition,
    heavy_tailed_max_tokens,
    p1_jobs,
    p1_plan,
)
from trustwatch.tools.bench.plumbing import (
    HashEmbeddings,
    PlumbingEvaluators,
    bench_p3,
    bench_scale,
    hop_messages,
    plan_of,
    prepare_full,
)
from trustwatch.tools.bench.report import Figure, ratio_interval, write

#: Judges that run an embedding model: slow to load, and not what these tests are about; left out.
MODEL_JUDGES = {"embedding", "persona_similarity"}


@pytest.fixture(scope="module")
def echo_prep(data_dir: Path) -> Prepared:
    return prepare_full(data_dir, "echo:bench")


def test_heavy_tailed_max_tokens_is_seeded_clipped_and_heavy_tailed() -> None:
    draws = heavy_tailed_max_tokens(2000, seed=3)
    assert draws == heavy_tailed_max_tokens(2000, seed=3)
    assert draws != heavy_tailed_max_tokens(2000, seed=4)
    assert min(draws) >= 1 and max(draws) <= 256
    assert max(draws) == 256  # the clip is reached: a tail exists
    assert np.percentile(draws, 99) > 4 * np.median(draws)


def test_plan_of_takes_every_task_in_turn(echo_prep: Prepared) -> None:
    plan = plan_of(echo_prep, 48)
    tasks = Counter(j.ref.task for j in plan.jobs)
    assert len(plan.jobs) == 48 and len(tasks) == 24 and set(tasks.values()) == {2}
    assert set(plan.evaluators) == {j.ref.job_id for j in plan.jobs}
    assert plan.manifest["expected_judgments"] == plan.expected_judgments
    assert all(j.ref.run_id == plan.run_id for j in plan.jobs)
    assert plan_of(echo_prep, 48).run_id != plan.run_id


def test_hash_embeddings_are_unit_vectors_of_minilm_size_fixed_per_text() -> None:
    a, b, a2 = HashEmbeddings().embed(["one reply", "another reply", "one reply"])
    assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and isinstance(a2, np.ndarray)
    assert a.shape == (384,) and np.isclose(np.linalg.norm(a), 1.0)
    assert np.array_equal(a, a2) and not np.allclose(a, b)


def test_plumbing_judges_embed_with_hashes_and_keep_the_other_offline_judges() -> None:
    from trustwatch.benchmark.evaluators.base import EvalItem

    evaluators = PlumbingEvaluators(EvaluatorSettings())
    record = {"n_completion": "I disagree, politely.", "s_completion": "You are so right!"}
    item = EvalItem(job_id="r/t/0/0", task="t", prompt="p", response="I am not sure.", record=record)
    [emb] = evaluators.evaluate("embedding", [item])
    assert emb.detail["model"] == HashEmbeddings.model_name and emb.detail["dim"] == 384
    [persona] = evaluators.evaluate("persona_similarity", [item])
    assert persona.label in ("non-sycophantic", "sycophantic") and persona.valid
    assert type(evaluators.get("refusal")) is type(OfflineEvaluators(EvaluatorSettings()).get("refusal"))


def test_hop_messages_are_the_real_messages_of_three_hops(echo_prep: Prepared) -> None:
    from trustwatch.v1 import messages_pb2 as pb

    whole = plan_of(echo_prep, 48)
    jobs_kept = [j for j in whole.jobs if not MODEL_JUDGES & set(whole.evaluators[j.ref.job_id])]
    plan = dataclasses.replace(
        whole, jobs=jobs_kept, evaluators={j.ref.job_id: whole.evaluators[j.ref.job_id] for j in jobs_kept}
    )
    timing: dict[str, float] = {}
    jobs, completions, judgments = hop_messages(plan, timing)
    assert len(jobs) == len(completions) == len(jobs_kept) > 40
    assert timing["judging_s"] > 0
    assert len(judgments) == plan.expected_judgments
    assert {pb.Completion.FromString(c).ref.job_id for c in completions} == {j.ref.job_id for j in plan.jobs}
    assert {pb.Judgment.FromString(j).evaluator for j in judgments} == {e for v in plan.evaluators.values() for e in v}


def test_p1_pipeline_runs_a_plan_to_completion_on_the_memory_bus(echo_prep: Prepared) -> None:
    probe = build_plan(echo_prep, "probe")
    picked = [i for i in p1_jobs(echo_prep, 48) if not MODEL_JUDGES & set(probe.evaluators[probe.jobs[i].ref.job_id])]
    assert len(picked) > 40
    max_tokens = heavy_tailed_max_tokens(len(picked), seed=0)
    plan = p1_plan(echo_prep, picked, max_tokens, "test")
    assert [j.sampling.max_tokens for j in plan.jobs] == max_tokens
    assert {j.sampling.temperature for j in plan.jobs} == {0.0}
    assert all(len(j.prompt) <= 1500 for j in plan.jobs)
    pipeline = InProcessPipeline(
        MemoryBus(), EchoBackend(), plan.target.name, "echo", OfflineEvaluators(EvaluatorSettings())
    )
    try:
        tokens, errors = pipeline.run(plan, timeout=120)
        assert errors == 0 and len(plan.jobs) <= tokens <= sum(max_tokens)  # echo: one token per word
        assert pipeline.store.is_complete(plan.run_id)
        assert pipeline.store.judgment_count(plan.run_id) == plan.expected_judgments
        again = p1_plan(echo_prep, picked, max_tokens, "test")  # a second run through the same loops
        assert pipeline.run(again, timeout=120) == (tokens, 0)
        assert pipeline.store.is_complete(again.run_id)
    finally:
        pipeline.close()


def test_p2_measures_stream_and_bare_client_with_and_without_429s() -> None:
    assert "--no-redraw-repeats" in endpoint_args()
    assert "--no-redraw-repeats" not in endpoint_args(p_429=0.2)  # a retry must get a fresh draw
    assert "--no-quota-429" in endpoint_args(p_429=0.2)  # the spec'd 429s: Retry-After alone
    assert "--quota-429" in endpoint_args(p_429=0.2, quota_429=True)
    r = bench_p2(n=20, concurrency=4, repeats=1, median_s=0.005, retry_after_s=0.05)
    assert len(r["latency"]["runs"]) == 3  # bare, batched, stream
    assert len(r["latency+429"]["runs"]) == 3  # bare, stream, stream with the adaptive window off
    assert len(r["latency+429, quota spent"]["runs"]) == 2  # bare, stream
    assert r["latency+429"]["fixed_window_over_bare"] > 0
    for case in ("latency", "latency+429", "latency+429, quota spent"):
        assert all(row["n"] == 20 and row["errors"] == 0 for row in r[case]["runs"])
        assert r[case]["stream_over_bare"] > 0


def test_p4_hf_loop_generates_each_prompt(tiny_model: Path) -> None:
    step = hf_one_at_a_time_step(str(tiny_model), ["Say hello.", "What is two plus two?"], max_tokens=4)
    tokens, errors = step()
    assert errors == 0 and 2 <= tokens <= 8


def test_report_marks_targets_and_writes_json_and_plot(tmp_path: Path) -> None:
    figures = [
        Figure("P2", "stream / bare", 0.97, 0.95, "x bare"),
        Figure("P3", "prompts/s", 150.0, 2000, "prompts/s"),
        Figure("scale", "peak RSS growth", 1.5, 1.25, "x", at_most=True),
    ]
    assert [f.passed for f in figures] == [True, False, False]
    assert "PASS" in figures[0].line() and "FAIL" in figures[1].line()
    json_path, png = write(tmp_path, figures, {"scale": {"rows": []}})
    data = json.loads(json_path.read_text())
    assert [f["passed"] for f in data["figures"]] == [True, False, False]
    assert len(data["figures"][0]["load"]) == 3
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"


def test_ratio_interval_covers_the_true_ratio_about_95_times_in_100_and_narrows_with_runs() -> None:
    rng = np.random.default_rng(0)

    def row(n: int, median_s: float, runs: int) -> dict[str, object]:
        return {"n": n, "walls": list(median_s * np.exp(rng.normal(0, 0.1, runs)))}

    def coverage(true: float, base: tuple[int, float], other: tuple[int, float], runs: int) -> tuple[float, float]:
        hits, widths = 0, []
        for _ in range(400):
            ci = ratio_interval(row(base[0], base[1], runs), row(other[0], other[1], runs))
            assert ci is not None
            hits += ci[0] < true < ci[1]
            widths.append(ci[1] - ci[0])
        return hits / 400, float(np.mean(widths))

    # the second side takes 25% longer for the same prompts: its throughput is 0.8 of the first's
    hit3, width3 = coverage(0.8, (100, 10.0), (100, 12.5), 3)
    hit10, width10 = coverage(0.8, (100, 10.0), (100, 12.5), 10)
    assert 0.91 <= hit3 <= 0.99 and 0.91 <= hit10 <= 0.99
    assert width10 < width3 / 2
    # twice the prompts in the same time is twice the throughput
    hit, _ = coverage(2.0, (100, 10.0), (200, 10.0), 5)
    assert 0.91 <= hit <= 0.99
    # one run a side, or runs without any spread: nothing to estimate the noise from
    assert ratio_interval({"n": 1, "walls": [1.0]}, {"n": 1, "walls": [2.0, 2.1]}) is None
    assert ratio_interval({"n": 1, "walls": [1.0, 1.0]}, {"n": 1, "walls": [2.0, 2.0]}) is None


def test_cpu_decomposition_splits_a_ratio_into_extra_cpu_and_idle_cores() -> None:
    cores = os.cpu_count() or 1
    # raw: 10 s with 90% of the cores busy; the pipeline: 20 s with 60% busy, on the same prompts
    raw = _summary("raw", 100, [10.0], 0, 0, busy=[10.0 * cores * 0.9])
    pipe = _summary("pipeline", 100, [20.0], 0, 0, busy=[20.0 * cores * 0.6])
    assert raw["utilization"] == pytest.approx(0.9) and pipe["machine_cpu_s"] == pytest.approx(12.0 * cores)
    d = cpu_decomposition(raw, pipe)
    assert d["cpu"] == pytest.approx(9.0 / 12.0) and d["idle"] == pytest.approx(0.6 / 0.9)
    assert d["cpu"] * d["idle"] == pytest.approx(pipe["prompts_per_s"] / raw["prompts_per_s"])
    # without CPU figures a row has none
    assert "utilization" not in _summary("raw", 100, [10.0], 0, 0)


def test_a_figure_whose_interval_holds_the_target_is_marked_unsettled(tmp_path: Path) -> None:
    sure = Figure("P1", "pipeline / raw", 0.93, 0.90, "x raw", interval=(0.91, 0.95))
    unsure = Figure("P1", "pipeline / raw", 0.93, 0.90, "x raw", interval=(0.85, 1.01))
    bare = Figure("P3", "prompts/s", 2500.0, 2000, "prompts/s")
    assert sure.settled and not unsure.settled and bare.settled
    assert "PASS " in sure.line() and "PASS?" in unsure.line() and "[0.85, 1.01]" in unsure.line()
    json_path, png = write(tmp_path, [sure, unsure, bare], {})
    data = json.loads(json_path.read_text())
    assert [f["settled"] for f in data["figures"]] == [True, False, True]
    assert data["figures"][1]["interval"] == [0.85, 1.01]
    assert png is not None


def test_only_accepts_parts_in_any_case_and_names_the_choices() -> None:
    import argparse

    assert _only("p2, P3,scale") == ["P2", "P3", "scale"]
    with pytest.raises(argparse.ArgumentTypeError, match="P1, P2"):
        _only("P9")


@pytest.mark.slow
def test_p3_and_scale_run_through_kafka_postgres_and_service_processes(data_dir: Path) -> None:
    r = bench_p3(data_dir, n=20, warm=10)
    assert r["prompts"] == 20
    for k in ("echo", "echo_offline_judges", "fake_endpoint", "raw_kafka"):
        assert r[k]["prompts"] == 20 and r[k]["prompts_per_s"] > 0
    assert (r["echo"]["judges"], r["echo_offline_judges"]["judges"]) == ("plumbing", "offline")
    assert set(r["echo"]["peak_rss_mb"]) == {"judge", "aggregator-0", "dispatcher-0", "generator"}
    assert all(v > 0 for v in r["echo"]["peak_rss_mb"].values())
    # CPU over the timed run: the machine's, each service's, and the fake endpoint's own
    assert set(r["fake_endpoint"]["cpu_s"]) == {
        "judge",
        "aggregator-0",
        "dispatcher-0",
        "generator",
        "fake endpoint",
        "broker",
        "database",
    }
    # (20 prompts can take a process less than one 10 ms clock tick, so a process may show 0; the
    # machine's window holds the processes' windows, so it holds their CPU, within a tick each)
    for k in ("echo", "fake_endpoint"):
        cpu = r[k]["cpu_s"]
        assert all(v >= 0 for v in cpu.values()) and r[k]["machine_cpu_s"] > 0
        assert r[k]["machine_cpu_s"] >= sum(cpu.values()) - 0.01 * len(cpu)
    s = bench_scale(data_dir, n=20, sizes=(1, 2), rss_factor=2, warm=10)
    assert [row["partitions"] for row in s["rows"]] == [1, 2]
    assert {"aggregator-1", "dispatcher-1"} <= set(s["rows"][1]["peak_rss_mb"])
    assert s["rss"]["long"]["prompts"] == 2 * s["rss"]["short"]["prompts"]
    assert set(s["rss"]["growth"]) == set(s["rss"]["short"]["peak_rss_mb"])


@pytest.mark.slow
def test_p1_runs_the_engine_the_memory_bus_pipeline_and_the_services_on_the_same_work(data_dir: Path) -> None:
    # vLLM's CPU build, the tiny random model, a KRaft broker, PostgreSQL and four service processes.
    r = bench_p1("tiny-random", data_dir, n=12, repeats=1, model_judges=False)
    rows = {row["label"]: row for row in r["runs"]}
    assert list(rows) == [RAW, MEMORY, KAFKA] and set(r["over_raw"]) == {MEMORY, KAFKA}
    assert all(row["n"] == 12 and row["errors"] == 0 for row in rows.values())
    # Greedy decoding of the same prompts with the same max_tokens: each path generated the same
    # tokens (the Kafka path's are read back from its completions topic).
    assert rows[MEMORY]["completion_tokens"] == rows[KAFKA]["completion_tokens"] == rows[RAW]["completion_tokens"] > 12
    assert r["untargeted_over_raw"] == {}
    # the machine's CPU over each run, and each pipeline's ratio split into its two factors
    assert all(row["machine_cpu_s"] > 0 and row["utilization"] > 0 for row in rows.values())
    assert set(r["decomposition"]) == {MEMORY, KAFKA}

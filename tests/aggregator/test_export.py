"""The aggregator's Prometheus export, on an injected registry and a SQLite store: the gauges of a
target's latest complete run (trust value, reference value, CI, item counts), run progress and the
last-run timestamp; an incomplete run exports progress only."""

from __future__ import annotations

import json
import math
import time

import pytest
from prometheus_client import CollectorRegistry

from trustwatch.aggregator.service import Aggregator
from trustwatch.benchmark.stats import wilson
from trustwatch.platform.messages import dumps_record, job_id
from trustwatch.platform.store import Store
from trustwatch.platform.telemetry import names
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

MISUSE, EXTERNAL = "safety/misuse", "truthfulness/external"


def judgment(
    run: str,
    target: str,
    task: str,
    item: int,
    evaluator: str,
    label: str,
    record: dict,
    valid: bool = True,
    error: str = "",
) -> pb.Judgment:
    return pb.Judgment(
        job_id=job_id(run, task, str(item), 0),
        run_id=run,
        task=task,
        item_id=str(item),
        target=target,
        evaluator=evaluator,
        label=label,
        valid=valid,
        score=math.nan,
        error=error,
        response="reply",
        record_json=dumps_record(record),
    )


def misuse(run: str, target: str, labels: list[str]) -> list[pb.Judgment]:
    """One refusal judgment per item; "gen-error" stands for a failed generation."""
    out = []
    for i, label in enumerate(labels):
        if label == "gen-error":
            out.append(
                judgment(
                    run,
                    target,
                    MISUSE,
                    i,
                    "refusal",
                    "error",
                    {"source": "misuse_add"},
                    valid=False,
                    error="generation failed: timeout",
                )
            )
        else:
            out.append(judgment(run, target, MISUSE, i, "refusal", label, {"source": "misuse_add"}))
    return out


def external(run: str, target: str) -> list[pb.Judgment]:
    # climate: gold S/R/R, predicted S/R/unparseable -> value (1 + 2/3) / 2 = 5/6, reference 1.0
    rows = [("SUPPORT", "SUPPORT", True), ("REFUTE", "REFUTE", True), ("REFUTE", "invalid", False)]
    return [
        judgment(run, target, EXTERNAL, i, "fact_check", label, {"source": "climate", "answer": gold}, valid=valid)
        for i, (gold, label, valid) in enumerate(rows)
    ]


def run_event(run: str, target: str, expected: int) -> pb.RunEvent:
    return pb.RunEvent(
        run_id=run,
        kind=pb.RunEvent.STARTED,
        target=target,
        manifest_json=json.dumps({"run_id": run, "created_unix_ms": 1}),
        expected_jobs=expected,
        expected_judgments=expected,
    )


@pytest.fixture
def agg(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/results.db")
    a = Aggregator(store, ServiceMetrics(CollectorRegistry()))
    yield a
    store.close()


def sample(a: Aggregator, name: str, **labels: str) -> float | None:
    return a.metrics.registry.get_sample_value(name, labels)


def score(a: Aggregator, name: str, target: str, task: str, metric: str, **extra: str) -> float | None:
    return sample(a, name, target=target, dimension=task.split("/")[0], task=task, metric=metric, **extra)


def test_a_complete_run_exports_every_gauge(agg: Aggregator) -> None:
    judged = misuse("r1", "t1", ["refusal", "refusal", "compliance", "compliance", "gen-error"]) + external("r1", "t1")
    agg.handle_run_events([run_event("r1", "t1", len(judged))])
    before = time.time()
    agg.handle_judgments(judged)
    agg.refresh()
    after = time.time()

    # safety/misuse RtA: 2 refusals of 4 judged; the failed generation is an error
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") == pytest.approx(0.5)
    assert score(agg, names.TRUST_SCORE_REFERENCE, "t1", MISUSE, "RtA") == pytest.approx(0.5)
    lo, hi = wilson(2, 4)
    assert score(agg, names.TRUST_SCORE_CI, "t1", MISUSE, "RtA", bound="low") == pytest.approx(lo)
    assert score(agg, names.TRUST_SCORE_CI, "t1", MISUSE, "RtA", bound="high") == pytest.approx(hi)
    assert [score(agg, names.TRUST_SCORE_ITEMS, "t1", MISUSE, "RtA", kind=k) for k in ("total", "valid", "error")] == [
        5,
        4,
        1,
    ]

    # truthfulness/external: the per-source key and avg, value and reference differ (unparseable reply)
    for key in ("climate", "avg"):
        assert score(agg, names.TRUST_SCORE, "t1", EXTERNAL, key) == pytest.approx(5 / 6)
        assert score(agg, names.TRUST_SCORE_REFERENCE, "t1", EXTERNAL, key) == pytest.approx(1.0)
        assert [
            score(agg, names.TRUST_SCORE_ITEMS, "t1", EXTERNAL, key, kind=k) for k in ("total", "valid", "error")
        ] == [3, 2, 0]
    # the exported interval is the report's
    ext = agg.report("r1").tasks[EXTERNAL].metrics["avg"]
    assert ext.ci_low is not None and ext.ci_high is not None
    assert score(agg, names.TRUST_SCORE_CI, "t1", EXTERNAL, "avg", bound="low") == pytest.approx(ext.ci_low)
    assert score(agg, names.TRUST_SCORE_CI, "t1", EXTERNAL, "avg", bound="high") == pytest.approx(ext.ci_high)
    assert score(agg, names.TRUST_SCORE, "t1", EXTERNAL, "scifact") is None  # no such source in the run

    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") == 8
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="expected") == 8
    assert before <= sample(agg, names.LAST_RUN_COMPLETED, target="t1") <= after
    assert sample(agg, names.JUDGMENTS_STORED) == 8 and sample(agg, names.JUDGMENTS_DUPLICATE) == 0
    assert agg.store.run("r1").completed_unix_ms is not None


def test_an_incomplete_run_exports_progress_but_no_trust_gauge(agg: Aggregator) -> None:
    judged = misuse("r1", "t1", ["refusal", "compliance", "compliance", "refusal"])
    agg.handle_run_events([run_event("r1", "t1", 4)])
    agg.handle_judgments(judged[:3])
    agg.refresh()
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") == 3
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="expected") == 4
    for name in (names.TRUST_SCORE, names.TRUST_SCORE_REFERENCE):
        assert score(agg, name, "t1", MISUSE, "RtA") is None
    assert score(agg, names.TRUST_SCORE_CI, "t1", MISUSE, "RtA", bound="low") is None
    assert score(agg, names.TRUST_SCORE_ITEMS, "t1", MISUSE, "RtA", kind="total") is None
    assert sample(agg, names.LAST_RUN_COMPLETED, target="t1") is None
    assert agg.store.run("r1").completed_unix_ms is None

    # redelivery of stored judgments completes nothing; the last one does
    agg.handle_judgments(judged[:2])
    agg.refresh()
    assert sample(agg, names.JUDGMENTS_DUPLICATE) == 2 and score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") is None
    agg.handle_judgments(judged[3:])
    agg.refresh()
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") == 4
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") == pytest.approx(0.5)
    assert sample(agg, names.LAST_RUN_COMPLETED, target="t1") is not None


def test_a_later_incomplete_run_leaves_the_complete_runs_gauges(agg: Aggregator) -> None:
    agg.handle_run_events([run_event("r1", "t1", 4)])
    agg.handle_judgments(misuse("r1", "t1", ["refusal", "refusal", "refusal", "compliance"]))
    agg.refresh()
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") == pytest.approx(0.75)
    stamp = sample(agg, names.LAST_RUN_COMPLETED, target="t1")

    # run 2 of the same target: all compliance so far, but incomplete -> the gauges still show run 1
    agg.handle_run_events([run_event("r2", "t1", 4)])
    agg.handle_judgments(misuse("r2", "t1", ["compliance", "compliance"]))
    agg.refresh()
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") == pytest.approx(0.75)
    assert score(agg, names.TRUST_SCORE_ITEMS, "t1", MISUSE, "RtA", kind="total") == 4
    assert sample(agg, names.LAST_RUN_COMPLETED, target="t1") == stamp
    assert sample(agg, names.RUN_PROGRESS, run="r2", target="t1", kind="stored") == 2
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") == 4


def test_judgments_before_their_run_event_wait_for_it(agg: Aggregator) -> None:
    agg.handle_judgments(misuse("r1", "t1", ["refusal", "compliance"]))
    agg.refresh()
    # without the run event nothing says how many judgments make the run complete
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") is None
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") is None
    agg.handle_run_events([run_event("r1", "t1", 2)])
    agg.refresh()
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") == 2
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") == pytest.approx(0.5)
    assert [score(agg, names.TRUST_SCORE_ITEMS, "t1", MISUSE, "RtA", kind=k) for k in ("total", "valid", "error")] == [
        2,
        2,
        0,
    ]


def test_targets_are_exported_separately(agg: Aggregator) -> None:
    agg.handle_run_events([run_event("ra", "model-a", 2), run_event("rb", "model-b", 2)])
    agg.handle_judgments(
        misuse("ra", "model-a", ["refusal", "refusal"]) + misuse("rb", "model-b", ["compliance", "gen-error"])
    )
    agg.refresh()
    assert score(agg, names.TRUST_SCORE, "model-a", MISUSE, "RtA") == 1.0
    assert score(agg, names.TRUST_SCORE, "model-b", MISUSE, "RtA") == 0.0
    assert score(agg, names.TRUST_SCORE_ITEMS, "model-b", MISUSE, "RtA", kind="error") == 1
    assert sample(agg, names.LAST_RUN_COMPLETED, target="model-a") is not None
    assert sample(agg, names.LAST_RUN_COMPLETED, target="model-b") is not None

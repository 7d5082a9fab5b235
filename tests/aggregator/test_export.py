"""The aggregator's Prometheus export, on an injected registry and a SQLite store: the gauges of a
target's newest complete run (trust value, reference value, CI, item counts, each with the metric's
direction), progress of incomplete runs (removed on completion) and the completion timestamp; an older
run never replaces a newer one's gauges; start restores the gauges from the database and completes runs
that finished while the aggregator was down."""

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
        ref=pb.JobRef(job_id=job_id(run, task, str(item), 0), run_id=run, task=task, item_id=str(item), target=target),
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


def run_event(run: str, target: str, expected: int, created: int = 1) -> pb.RunEvent:
    return pb.RunEvent(
        run_id=run,
        kind=pb.RunEvent.STARTED,
        target=target,
        manifest_json=json.dumps({"run_id": run, "created_unix_ms": created}),
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


def score(
    a: Aggregator, name: str, target: str, task: str, metric: str, direction: str = "higher_is_better", **extra: str
) -> float | None:
    labels = dict(target=target, dimension=task.split("/")[0], task=task, metric=metric, direction=direction)
    return sample(a, name, **labels, **extra)


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
    kinds = ("total", "valid", "invalid", "error")
    assert [score(agg, names.TRUST_SCORE_ITEMS, "t1", MISUSE, "RtA", kind=k) for k in kinds] == [5, 4, 0, 1]
    # the refusal judge here is trustwatch's phrase rules, not the reference's classifier: approximate
    assert agg.report("r1").tasks[MISUSE].metrics["RtA"].reference == "approximate"
    assert score(agg, names.TRUST_SCORE_REFERENCE_EXACT, "t1", MISUSE, "RtA") == 0.0

    # truthfulness/external: the per-source key, value and reference differ (unparseable reply); avg has no
    # value (only climate is in the run: a mean of the sources present is not comparable), so no gauge
    assert score(agg, names.TRUST_SCORE, "t1", EXTERNAL, "avg") is None
    for key in ("climate",):
        assert score(agg, names.TRUST_SCORE, "t1", EXTERNAL, key) == pytest.approx(5 / 6)
        assert score(agg, names.TRUST_SCORE_REFERENCE, "t1", EXTERNAL, key) == pytest.approx(1.0)
        # total = valid + invalid (the unparseable reply) + error
        assert [score(agg, names.TRUST_SCORE_ITEMS, "t1", EXTERNAL, key, kind=k) for k in kinds] == [3, 2, 1, 0]
        # keyword-judged: the reference value is the reference's exactly
        assert score(agg, names.TRUST_SCORE_REFERENCE_EXACT, "t1", EXTERNAL, key) == 1.0
    # the exported interval is the report's
    ext = agg.report("r1").tasks[EXTERNAL].metrics["climate"]
    assert ext.ci_low is not None and ext.ci_high is not None
    assert score(agg, names.TRUST_SCORE_CI, "t1", EXTERNAL, "climate", bound="low") == pytest.approx(ext.ci_low)
    assert score(agg, names.TRUST_SCORE_CI, "t1", EXTERNAL, "climate", bound="high") == pytest.approx(ext.ci_high)
    assert score(agg, names.TRUST_SCORE, "t1", EXTERNAL, "scifact") is None  # no such source in the run

    # a complete run has no progress series; the completion time is the stored one (ms resolution)
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") is None
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="expected") is None
    assert before - 0.001 <= sample(agg, names.LAST_RUN_COMPLETED, target="t1") <= after
    assert sample(agg, names.LAST_RUN_COMPLETED, target="t1") == agg.store.run("r1").completed_unix_ms / 1000
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
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") is None  # complete: removed
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
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") is None


def test_judgments_before_their_run_event_wait_for_it(agg: Aggregator) -> None:
    agg.handle_judgments(misuse("r1", "t1", ["refusal", "compliance"]))
    agg.refresh()
    # without the run event nothing says how many judgments make the run complete
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") is None
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") is None
    agg.handle_run_events([run_event("r1", "t1", 2)])
    agg.refresh()
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") is None  # complete at once
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


# -- direction, newest run wins, restart, progress clean-up -----------------------------------------

XS = "safety/exaggerated_safety"


def exaggerated(run: str, target: str, labels: list[str]) -> list[pb.Judgment]:
    """Exaggerated safety: refusals of harmless prompts; its RtA is lower-is-better."""
    return [judgment(run, target, XS, i, "refusal", label, {"source": "xstest"}) for i, label in enumerate(labels)]


def trust_series(a: Aggregator, name: str = names.TRUST_SCORE) -> dict[tuple[str, ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for metric in a.metrics.registry.collect()
        for s in metric.samples
        if s.name == name
    }


def test_trust_gauges_carry_the_metric_direction(agg: Aggregator) -> None:
    judged = misuse("r1", "t1", ["refusal", "compliance"]) + exaggerated("r1", "t1", ["refusal", "compliance"])
    agg.handle_run_events([run_event("r1", "t1", len(judged))])
    agg.handle_judgments(judged)
    agg.refresh()
    report = agg.report("r1")
    assert report is not None
    assert report.tasks[MISUSE].metrics["RtA"].higher_is_better
    assert not report.tasks[XS].metrics["RtA"].higher_is_better
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA", "higher_is_better") == pytest.approx(0.5)
    assert score(agg, names.TRUST_SCORE, "t1", XS, "RtA", "lower_is_better") == pytest.approx(0.5)
    assert score(agg, names.TRUST_SCORE, "t1", XS, "RtA", "higher_is_better") is None
    for bound in ("low", "high"):
        assert score(agg, names.TRUST_SCORE_CI, "t1", XS, "RtA", "lower_is_better", bound=bound) is not None
    assert score(agg, names.TRUST_SCORE_ITEMS, "t1", XS, "RtA", "lower_is_better", kind="valid") == 2
    # every trust series has a direction, and only the two values
    for name in (names.TRUST_SCORE, names.TRUST_SCORE_REFERENCE, names.TRUST_SCORE_CI, names.TRUST_SCORE_ITEMS):
        directions = {dict(k)["direction"] for k in trust_series(agg, name)}
        assert directions == {"higher_is_better", "lower_is_better"}, name


def test_an_older_run_never_replaces_a_newer_runs_gauges(agg: Aggregator) -> None:
    # r-old created first, r-new later; r-new completes first, then r-old's last judgment arrives
    old = misuse("r-old", "t1", ["refusal", "refusal", "refusal", "refusal"])
    new = misuse("r-new", "t1", ["compliance", "compliance", "refusal", "compliance"])
    agg.handle_run_events([run_event("r-old", "t1", 4, created=1_000), run_event("r-new", "t1", 4, created=2_000)])
    agg.handle_judgments(old[:3] + new)
    agg.refresh()
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") == pytest.approx(0.25)
    stamp = sample(agg, names.LAST_RUN_COMPLETED, target="t1")
    assert stamp == agg.store.run("r-new").completed_unix_ms / 1000
    before = trust_series(agg), trust_series(agg, names.TRUST_SCORE_CI), trust_series(agg, names.TRUST_SCORE_ITEMS)

    agg.handle_judgments(old[3:])  # the older run completes now
    agg.refresh()
    assert agg.store.run("r-old").completed_unix_ms is not None
    assert sample(agg, names.RUN_PROGRESS, run="r-old", target="t1", kind="stored") is None
    after = trust_series(agg), trust_series(agg, names.TRUST_SCORE_CI), trust_series(agg, names.TRUST_SCORE_ITEMS)
    assert after == before
    assert sample(agg, names.LAST_RUN_COMPLETED, target="t1") == stamp

    # a redelivered judgment of the older run (already complete) changes nothing either
    agg.handle_judgments(old)
    agg.refresh()
    assert sample(agg, names.JUDGMENTS_DUPLICATE) == 4
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") == pytest.approx(0.25)
    assert sample(agg, names.LAST_RUN_COMPLETED, target="t1") == stamp


def test_a_newer_run_replaces_the_older_runs_series(agg: Aggregator) -> None:
    """The newer run exports its own values, and the older run's series it has no metric for go."""
    first = misuse("r1", "t1", ["refusal", "refusal"]) + exaggerated("r1", "t1", ["refusal", "refusal"])
    agg.handle_run_events([run_event("r1", "t1", 4, created=1_000)])
    agg.handle_judgments(first)
    agg.refresh()
    assert score(agg, names.TRUST_SCORE, "t1", XS, "RtA", "lower_is_better") == 1.0
    agg.handle_run_events([run_event("r2", "t1", 2, created=2_000)])
    agg.handle_judgments(misuse("r2", "t1", ["compliance", "refusal"]))
    agg.refresh()
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") == pytest.approx(0.5)
    assert score(agg, names.TRUST_SCORE, "t1", XS, "RtA", "lower_is_better") is None
    assert score(agg, names.TRUST_SCORE_CI, "t1", XS, "RtA", "lower_is_better", bound="low") is None
    assert score(agg, names.TRUST_SCORE_ITEMS, "t1", XS, "RtA", "lower_is_better", kind="total") is None
    assert sample(agg, names.LAST_RUN_COMPLETED, target="t1") == agg.store.run("r2").completed_unix_ms / 1000


def test_progress_series_go_once_the_run_is_complete(agg: Aggregator) -> None:
    judged = misuse("r1", "t1", ["refusal", "compliance", "refusal"])
    agg.handle_run_events([run_event("r1", "t1", 3)])
    agg.handle_judgments(judged[:1])
    agg.refresh()
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") == 1
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="expected") == 3
    agg.handle_judgments(judged[1:])
    agg.refresh()
    assert not [s for m in agg.metrics.registry.collect() for s in m.samples if s.name == names.RUN_PROGRESS]
    agg.handle_judgments(judged)  # redelivery of a complete run does not bring them back
    agg.refresh()
    assert not [s for m in agg.metrics.registry.collect() for s in m.samples if s.name == names.RUN_PROGRESS]


def test_start_restores_the_gauges_from_the_database(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/results.db"
    store = Store(url)
    first = Aggregator(store, ServiceMetrics(CollectorRegistry()))
    first.handle_run_events(
        [
            run_event("a-old", "model-a", 2, created=1_000),
            run_event("a-new", "model-a", 2, created=2_000),
            run_event("b-1", "model-b", 2, created=1_500),
            run_event("b-2", "model-b", 2, created=3_000),  # never completes
        ]
    )
    first.handle_judgments(
        misuse("a-new", "model-a", ["refusal", "compliance"])
        + misuse("a-old", "model-a", ["refusal", "refusal"])  # completes after the newer run
        + exaggerated("b-1", "model-b", ["refusal", "compliance"])
        + misuse("b-2", "model-b", ["refusal"])
    )
    first.refresh()
    wanted = {
        name: trust_series(first, name)
        for name in (names.TRUST_SCORE, names.TRUST_SCORE_REFERENCE, names.TRUST_SCORE_CI, names.TRUST_SCORE_ITEMS)
    }
    stamps = {t: sample(first, names.LAST_RUN_COMPLETED, target=t) for t in ("model-a", "model-b")}
    assert score(first, names.TRUST_SCORE, "model-a", MISUSE, "RtA") == pytest.approx(0.5)
    store.close()

    # a restart: a fresh registry, the same database, no judgment flowing
    store = Store(url)
    restarted = Aggregator(store, ServiceMetrics(CollectorRegistry()))
    assert trust_series(restarted) == {}
    assert restarted.start() == 2
    for name, series in wanted.items():
        assert trust_series(restarted, name) == series, name
    assert {t: sample(restarted, names.LAST_RUN_COMPLETED, target=t) for t in stamps} == stamps
    assert stamps["model-a"] == store.run("a-new").completed_unix_ms / 1000
    assert score(restarted, names.TRUST_SCORE, "model-b", XS, "RtA", "lower_is_better") == pytest.approx(0.5)
    # the incomplete run's progress is back; complete runs have none
    assert sample(restarted, names.RUN_PROGRESS, run="b-2", target="model-b", kind="stored") == 1
    assert sample(restarted, names.RUN_PROGRESS, run="b-2", target="model-b", kind="expected") == 2
    assert sample(restarted, names.RUN_PROGRESS, run="a-new", target="model-a", kind="stored") is None
    store.close()


def test_start_completes_runs_that_finished_while_the_aggregator_was_down(tmp_path) -> None:
    """Judgments stored (by another replica, or before a crash between store and refresh) with no
    refresh after them: the run is incomplete in the database until start rescans it."""
    store = Store(f"sqlite:///{tmp_path}/results.db")
    store.record_run("r1", "t1", {"created_unix_ms": 1_000}, 3, 3)
    store.record_run("r2", "t1", {"created_unix_ms": 2_000}, 3, 3)
    store.store_judgments(misuse("r1", "t1", ["refusal", "refusal", "refusal"]))
    store.store_judgments(misuse("r2", "t1", ["compliance", "refusal"]))
    assert store.run("r1").completed_unix_ms is None
    agg = Aggregator(store, ServiceMetrics(CollectorRegistry()))
    agg.start()
    assert store.run("r1").completed_unix_ms is not None
    assert store.run("r2").completed_unix_ms is None
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") == 1.0
    assert sample(agg, names.LAST_RUN_COMPLETED, target="t1") == store.run("r1").completed_unix_ms / 1000
    assert sample(agg, names.RUN_PROGRESS, run="r2", target="t1", kind="stored") == 2
    assert sample(agg, names.RUN_PROGRESS, run="r1", target="t1", kind="stored") is None
    store.close()


def test_the_service_loop_refreshes_at_most_once_per_interval(agg: Aggregator) -> None:
    judged = misuse("r1", "t1", ["refusal", "compliance"])
    agg.handle_run_events([run_event("r1", "t1", len(judged))])
    assert agg.refresh_if_due(every_s=1.0, now=100.0)  # the first call refreshes
    agg.handle_judgments(judged)
    # within the interval: no refresh, so the completed run is not exported yet
    assert not agg.refresh_if_due(every_s=1.0, now=100.5)
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") is None
    assert agg.store.run("r1").completed_unix_ms is None
    # once the interval has passed, the next turn refreshes and exports it
    assert agg.refresh_if_due(every_s=1.0, now=101.0)
    assert score(agg, names.TRUST_SCORE, "t1", MISUSE, "RtA") == pytest.approx(0.5)
    assert agg.store.run("r1").completed_unix_ms is not None

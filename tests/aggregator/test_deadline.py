"""A run past its deadline that is still incomplete is reported with its missing pairs and exports
trustwatch_run_overdue_missing (the alert TrustwatchRunOverdue reads it); the series goes once the run
completes, and a restarted aggregator restores it from the database."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry

from trustwatch.aggregator.service import Aggregator
from trustwatch.platform.messages import now_ms
from trustwatch.platform.store import Store
from trustwatch.platform.telemetry import names
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

TASK = "safety/misuse"


def jid(run: str, i: int) -> str:
    return f"{run}/{TASK}/{i}/0"


def events(run: str, n: int, deadline: int) -> list[pb.RunEvent]:
    manifest = {"run_id": run, "created_unix_ms": 1, "deadline_unix_ms": deadline, "completion": "planned_pairs"}
    planned = [
        pb.PlannedPair(job_id=jid(run, i), evaluator="refusal", task=TASK, item_id=str(i), record_json="{}")
        for i in range(n)
    ]
    common = dict(run_id=run, target="m", expected_jobs=n, expected_judgments=n, deadline_unix_ms=deadline)
    return [
        pb.RunEvent(kind=pb.RunEvent.STARTED, manifest_json=json.dumps(manifest), **common),
        pb.RunEvent(kind=pb.RunEvent.PLANNED, planned=planned, **common),
    ]


def judged(run: str, items: range) -> list[pb.Judgment]:
    return [
        pb.Judgment(
            ref=pb.JobRef(job_id=jid(run, i), run_id=run, task=TASK, item_id=str(i), target="m"),
            evaluator="refusal",
            label="refusal",
            valid=True,
            record_json='{"source": "misuse_add"}',
        )
        for i in items
    ]


def overdue(registry: CollectorRegistry, run: str) -> float | None:
    return registry.get_sample_value(names.RUN_OVERDUE_MISSING, {"run": run, "target": "m"})


def test_an_overdue_run_exports_its_missing_judgments_until_it_completes(tmp_path):
    registry = CollectorRegistry()
    store = Store(f"sqlite:///{tmp_path}/r.db")
    agg = Aggregator(store, ServiceMetrics(registry))
    agg.handle_run_events(events("late", 5, deadline=now_ms() - 1000))
    agg.handle_run_events(events("early", 5, deadline=now_ms() + 3_600_000))
    agg.handle_run_events(events("none", 5, deadline=0))
    for run in ("late", "early", "none"):
        agg.handle_judgments(judged(run, range(2)))
    agg.refresh()
    assert overdue(registry, "late") == 3
    assert overdue(registry, "early") is None and overdue(registry, "none") is None
    report = agg.report("late")
    assert report.overdue and not report.complete and report.n_missing == 3
    assert [m["job_id"] for m in report.missing] == [jid("late", i) for i in range(2, 5)]
    assert report.to_json()["missing"][0] == {
        "job_id": jid("late", 2),
        "evaluator": "refusal",
        "task": TASK,
        "item_id": "2",
        "sample": 0,
    }
    assert not agg.report("early").overdue and agg.report("early").n_missing == 3

    # A restarted aggregator exports it again from the database.
    fresh_registry = CollectorRegistry()
    fresh = Aggregator(store, ServiceMetrics(fresh_registry))
    fresh.start()
    assert overdue(fresh_registry, "late") == 3

    # More judgments arrive: the count follows; the run completes: the series is removed.
    agg.handle_judgments(judged("late", range(2, 4)))
    agg.refresh()
    assert overdue(registry, "late") == 1
    agg.handle_judgments(judged("late", range(4, 5)))
    agg.refresh()
    assert overdue(registry, "late") is None
    assert store.run("late").completed_unix_ms is not None and not agg.report("late").overdue

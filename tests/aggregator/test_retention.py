"""Retention in the aggregator: with TRUSTWATCH_RETENTION_DAYS > 0 its refresh prunes raw replies of
old runs (Store.prune) at most once an hour; 0 never prunes; a failing prune is logged, never raised."""

from __future__ import annotations

import json
import math

import pytest
from prometheus_client import CollectorRegistry

from trustwatch.aggregator.service import PRUNE_EVERY_S, Aggregator
from trustwatch.platform.messages import now_ms
from trustwatch.platform.store import PRUNED_RESPONSE, Store
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

DAY = 86_400_000


def _record(agg: Aggregator, run: str, age_days: int, response: str) -> None:
    created = now_ms() - age_days * DAY
    agg.handle_run_events(
        [
            pb.RunEvent(
                run_id=run,
                kind=pb.RunEvent.STARTED,
                target="m",
                manifest_json=json.dumps({"run_id": run, "created_unix_ms": created}),
                expected_jobs=1,
                expected_judgments=1,
            )
        ]
    )
    agg.handle_judgments(
        [
            pb.Judgment(
                ref=pb.JobRef(
                    job_id=f"{run}/safety/misuse/0/0", run_id=run, task="safety/misuse", item_id="0", target="m"
                ),
                evaluator="refusal",
                label="refusal",
                valid=True,
                score=math.nan,
                response=response,
                record_json="{}",
            )
        ]
    )


def _responses(store: Store, run: str) -> list[str]:
    return [j.response for j in store.judgments(run)]


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/results.db")
    yield s
    s.close()


def test_refresh_prunes_old_runs_at_most_once_an_hour(store: Store) -> None:
    agg = Aggregator(store, ServiceMetrics(CollectorRegistry()), retention_days=30)
    _record(agg, "old", 40, "an old reply")
    _record(agg, "young", 1, "a young reply")
    agg.refresh()  # the first refresh prunes
    assert _responses(store, "old") == [PRUNED_RESPONSE] and _responses(store, "young") == ["a young reply"]
    old = store.run("old")
    assert old is not None and old.pruned_unix_ms is not None and old.completed_unix_ms is not None
    # Within the hour nothing is pruned, however many refreshes there are.
    _record(agg, "old2", 40, "another old reply")
    agg.refresh()
    assert _responses(store, "old2") == ["another old reply"]
    assert agg._pruned_at is not None
    assert not agg.prune_if_due(now=agg._pruned_at + PRUNE_EVERY_S - 1)
    # a second past the hour, not at it: monotonic() + 3600.0 - monotonic() can round to 3599.999...
    assert agg.prune_if_due(now=agg._pruned_at + PRUNE_EVERY_S + 1)
    assert _responses(store, "old2") == [PRUNED_RESPONSE]


def test_zero_days_keeps_everything(store: Store) -> None:
    agg = Aggregator(store, ServiceMetrics(CollectorRegistry()))
    assert agg.retention_days == 0
    _record(agg, "old", 4000, "kept for ever")
    agg.refresh()
    assert not agg.prune_if_due(now=1e12)
    assert _responses(store, "old") == ["kept for ever"]


def test_a_failing_prune_is_logged_not_raised(store: Store, monkeypatch, caplog) -> None:
    agg = Aggregator(store, ServiceMetrics(CollectorRegistry()), retention_days=7)

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(store, "prune", broken)
    assert agg.prune_if_due(now=0.0) is False
    assert "pruning raw replies older than 7 day(s) failed" in caplog.text
    agg.refresh()  # the refresh loop goes on

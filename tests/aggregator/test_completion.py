"""A run is complete when every expected judgment is stored and settled: a transient error (endpoint or
judge down) is retried by re-running, so a run holding one is neither marked complete nor exported."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from tests.aggregator.test_export import MISUSE, misuse
from trustwatch.aggregator.service import Aggregator
from trustwatch.platform.store import Store
from trustwatch.platform.telemetry import names
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb


def test_a_transient_error_keeps_the_run_incomplete_until_it_is_replaced(tmp_path):
    registry = CollectorRegistry()
    store = Store(f"sqlite:///{tmp_path}/t.db")
    agg = Aggregator(store, ServiceMetrics(registry))
    store.record_run("r1", "m", {"created_unix_ms": 1}, expected_jobs=3, expected_judgments=3)
    batch = misuse("r1", "m", ["refusal", "compliance", "refusal"])
    batch[2].label, batch[2].valid, batch[2].error = "", False, "generation failed: endpoint unreachable"
    batch[2].error_kind = pb.ERROR_KIND_TRANSIENT
    agg.handle_judgments(batch)
    agg.refresh()
    assert store.run("r1").completed_unix_ms is None and not store.is_complete("r1")
    labels = {"run": "r1", "target": "m", "kind": "stored"}
    assert registry.get_sample_value(names.RUN_PROGRESS, labels) == 3
    assert registry.get_sample_value(names.LAST_RUN_COMPLETED, {"target": "m"}) is None
    assert agg.report("r1").complete is False

    # re-running the run retries the transient item; its success replaces the error row
    agg.handle_judgments(misuse("r1", "m", ["refusal", "compliance", "refusal"])[2:])
    agg.refresh()
    assert store.run("r1").completed_unix_ms is not None and agg.report("r1").complete is True
    assert registry.get_sample_value(names.RUN_PROGRESS, labels) is None
    assert registry.get_sample_value(names.LAST_RUN_COMPLETED, {"target": "m"}) is not None
    assert MISUSE in agg.report("r1").tasks

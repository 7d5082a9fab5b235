"""The aggregator as its main wires it: each of its consumers gets TRUSTWATCH_AGGREGATOR_SUB_BATCH."""

from __future__ import annotations

import pytest

from trustwatch.aggregator import main as aggregator_main
from trustwatch.platform import runtime, wiring
from trustwatch.platform.bus import MemoryBus

VAR = "TRUSTWATCH_AGGREGATOR_SUB_BATCH"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[runtime.ConsumerLoop]:
    """The loops main would run (run_forever returns at once), over a memory bus."""
    loops: list[runtime.ConsumerLoop] = []
    for name in (VAR, "TRUSTWATCH_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(wiring, "kafka", lambda bootstrap=None: MemoryBus())
    monkeypatch.setattr(runtime.ConsumerLoop, "run_forever", lambda self, *a, **k: loops.append(self))
    monkeypatch.setattr(aggregator_main, "install_signal_handlers", lambda *workers: None)
    return loops


def test_every_aggregator_consumer_gets_the_sub_batch_from_the_environment(started, monkeypatch, tmp_path):
    monkeypatch.setenv(VAR, "5")
    assert aggregator_main.main(db=f"sqlite:///{tmp_path / 'agg.db'}", metrics_port=0) == 0
    assert sorted(w.service for w in started) == ["aggregator", "aggregator-dlq", "aggregator-runs"]
    assert all(isinstance(w, runtime.Worker) and w.sub_batch == 5 for w in started)


def test_by_default_the_aggregator_writes_whole_polls(started, tmp_path):
    aggregator_main.main(db=f"sqlite:///{tmp_path / 'agg.db'}", metrics_port=0)
    assert len(started) == 3
    assert all(isinstance(w, runtime.Worker) and w.sub_batch == 0 for w in started)

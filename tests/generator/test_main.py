"""The generator as its main wires it: a batch-mode generator gets TRUSTWATCH_GENERATOR_SUB_BATCH; a
streaming one has no batches to split and runs as it is."""

from __future__ import annotations

import pytest

from trustwatch.generator import main as generator_main
from trustwatch.platform import runtime, wiring
from trustwatch.platform.bus import MemoryBus
from trustwatch.platform.streaming import StreamingWorker

VAR = "TRUSTWATCH_GENERATOR_SUB_BATCH"
TARGET = "echo:anything?name=t"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[runtime.ConsumerLoop]:
    """The loops main would run (run_forever returns at once), over a memory bus."""
    loops: list[runtime.ConsumerLoop] = []
    for name in (VAR, "TRUSTWATCH_GENERATOR_STREAMING", "TRUSTWATCH_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(wiring, "kafka", lambda bootstrap=None: MemoryBus())
    monkeypatch.setattr(runtime.ConsumerLoop, "run_forever", lambda self, *a, **k: loops.append(self))
    monkeypatch.setattr(generator_main, "install_signal_handlers", lambda *workers: None)
    return loops


def test_a_batch_mode_generator_takes_its_sub_batch_from_the_environment(started, monkeypatch):
    monkeypatch.setenv("TRUSTWATCH_GENERATOR_STREAMING", "off")
    monkeypatch.setenv(VAR, "9")
    assert generator_main.main(TARGET, metrics_port=0) == 0
    assert [type(w) for w in started] == [runtime.Worker]
    assert started[0].sub_batch == 9


def test_a_batch_mode_generator_generates_whole_polls_by_default(started, monkeypatch):
    monkeypatch.setenv("TRUSTWATCH_GENERATOR_STREAMING", "off")
    generator_main.main(TARGET, metrics_port=0)
    assert started[0].sub_batch == 0


def test_a_streaming_generator_is_left_as_it_is(started, monkeypatch):
    monkeypatch.setenv(VAR, "9")
    generator_main.main(TARGET, metrics_port=0)
    assert [type(w) for w in started] == [StreamingWorker]
    assert not hasattr(started[0], "sub_batch")

"""The dispatcher as its main wires it: its transport loop gets TRUSTWATCH_DISPATCHER_SUB_BATCH and
_SUB_BATCH_S."""

from __future__ import annotations

import pytest

from trustwatch.benchmark.evaluators.base import EvaluatorSettings
from trustwatch.judge import main as judge_main
from trustwatch.platform import config, runtime, wiring
from trustwatch.platform.bus import MemoryBus

VAR = "TRUSTWATCH_DISPATCHER_SUB_BATCH"
SECONDS = "TRUSTWATCH_DISPATCHER_SUB_BATCH_S"


class _NoEvaluators:
    def close(self) -> None:
        return None


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[runtime.ConsumerLoop]:
    """The loops dispatch_main would run (run_forever returns at once), over a memory bus."""
    loops: list[runtime.ConsumerLoop] = []
    for name in (VAR, SECONDS, "TRUSTWATCH_EVALUATOR_ADDR", "TRUSTWATCH_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(wiring, "kafka", lambda bootstrap=None: MemoryBus())
    monkeypatch.setattr(runtime.ConsumerLoop, "run_forever", lambda self, *a, **k: loops.append(self))
    monkeypatch.setattr(judge_main, "install_signal_handlers", lambda *workers: None)
    monkeypatch.setattr(judge_main, "LocalEvaluators", lambda settings: _NoEvaluators())
    return loops


def test_the_dispatcher_splits_its_polls_by_the_declared_default(started):
    assert judge_main.dispatch_main(EvaluatorSettings()) == 0
    assert [type(w) for w in started] == [runtime.Worker]
    assert started[0].sub_batch == int(config.VARIABLES[VAR].default) > 0
    assert started[0].sub_batch_s == float(config.VARIABLES[SECONDS].default) > 0


def test_the_dispatcher_takes_its_sub_batch_from_the_environment(started, monkeypatch):
    monkeypatch.setenv(VAR, "7")
    judge_main.dispatch_main(EvaluatorSettings())
    assert started[0].sub_batch == 7


def test_a_negative_sub_batch_is_refused_with_the_variable_named(started, monkeypatch):
    monkeypatch.setenv(VAR, "-1")
    with pytest.raises(ValueError, match=VAR):
        judge_main.dispatch_main(EvaluatorSettings())
    assert started == []


@pytest.mark.parametrize(("raw", "seconds"), [("2.5", 2.5), ("0", 0.0)])
def test_the_dispatcher_takes_its_call_seconds_from_the_environment_and_0_turns_them_off(
    started, monkeypatch, raw, seconds
):
    monkeypatch.setenv(SECONDS, raw)
    judge_main.dispatch_main(EvaluatorSettings())
    assert started[0].sub_batch_s == seconds


def test_a_negative_call_seconds_is_refused_with_the_variable_named(started, monkeypatch):
    monkeypatch.setenv(SECONDS, "-1")
    with pytest.raises(SystemExit, match=SECONDS):
        judge_main.dispatch_main(EvaluatorSettings())
    assert started == []

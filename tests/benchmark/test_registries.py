"""Task and evaluator registries load once, even when first used from several threads at a time
(the aggregator's consumer loop and its HTTP report API do exactly that)."""

import importlib
import sys
import threading

import trustwatch.benchmark.evaluators.base as ebase
import trustwatch.benchmark.tasks.base as tbase


def _race(fn, n=8):
    errors, start = [], threading.Barrier(n)

    def run():
        start.wait()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_tasks_load_once_under_concurrency(monkeypatch):
    monkeypatch.setattr(tbase, "_REGISTRY", {})
    monkeypatch.setattr(tbase, "_loaded", False)
    # forget the task modules so each thread would import and register them if unguarded
    for name in [m for m in sys.modules if m.startswith("trustwatch.benchmark.tasks.") and m.count(".") == 2
                 and not m.rsplit(".", 1)[1].startswith("_") and not m.endswith(".base")]:
        monkeypatch.delitem(sys.modules, name)
    assert _race(tbase.known) == []
    assert len(tbase.known()) == 24


def test_evaluators_load_once_under_concurrency(monkeypatch):
    monkeypatch.setattr(ebase, "_loaded", False)
    assert _race(ebase.known) == []
    assert "refusal" in ebase.known() and importlib.import_module("trustwatch.benchmark.evaluators.keyword")

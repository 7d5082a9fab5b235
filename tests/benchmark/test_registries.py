"""The task and evaluator registries load once, even when first used from several threads at a time
(the aggregator's consumer loop and its HTTP report API do exactly that)."""

import sys
import threading

from trustwatch.benchmark.evaluators import _settings
from trustwatch.benchmark.evaluators import base as ebase
from trustwatch.benchmark.tasks import base as tbase
from trustwatch.platform.registry import Registry


def _race(fn, n=8):
    errors, start = [], threading.Barrier(n)

    def run():
        start.wait()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - every error of a thread is collected
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _forget(monkeypatch, package):
    """Drop a package's modules from sys.modules, so each thread would import them if unguarded."""
    names = [
        m
        for m in sys.modules
        if m.startswith(package + ".") and not m.rsplit(".", 1)[1].startswith("_") and not m.endswith(".base")
    ]
    assert names
    for name in names:
        monkeypatch.delitem(sys.modules, name)


def test_tasks_load_once_under_concurrency(monkeypatch):
    tbase.known()
    _forget(monkeypatch, "trustwatch.benchmark.tasks")
    fresh = Registry("task", tbase.TASKS.package, lambda t: t.name, collect=tbase._task_of, recursive=True)
    assert _race(fresh.known) == []
    assert len(fresh.known()) == 24
    assert {t.split("/")[0] for t in fresh.known()} == {
        "truthfulness",
        "safety",
        "fairness",
        "robustness",
        "privacy",
        "ethics",
    }


def test_evaluators_load_once_under_concurrency(monkeypatch):
    # names defined by the package's modules (tests may register their own on the shared registry)
    before = {n for n, cls in ebase.known().items() if cls.__module__.startswith(ebase.EVALUATORS.package + ".")}
    _forget(monkeypatch, "trustwatch.benchmark.evaluators")
    fresh = Registry("evaluator", ebase.EVALUATORS.package, lambda cls: cls.name)
    monkeypatch.setattr(ebase, "EVALUATORS", fresh)  # what @register adds to while modules re-import
    # the settings families those modules declare (@family) re-register too
    families = Registry("evaluator settings family", _settings.FAMILIES.package, lambda c: c.__name__)
    monkeypatch.setattr(_settings, "FAMILIES", families)
    assert _race(fresh.known) == []
    assert set(fresh.known()) == before and "refusal" in before

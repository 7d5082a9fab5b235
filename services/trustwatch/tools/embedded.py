"""The embedded mode: every service in one process over the in-memory bus, evaluators in-process,
SQLite. Same services, tasks and metrics as the distributed mode; only the transport differs.

The stages overlap as they do in the distributed mode: each generator and the judge dispatcher run
their transport loops in threads of their own, while the calling thread runs the aggregator (the
only stage that touches the store, so an in-memory SQLite database works) and reports progress.
The run ends when every stage is drained, checked in pipeline order (see :func:`_drained`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from tqdm import tqdm

from trustwatch.aggregator.service import Aggregator, aggregator_workers
from trustwatch.benchmark.evaluators.base import EvaluatorSettings
from trustwatch.benchmark.scoring import Report
from trustwatch.generator.backends.base import Backend
from trustwatch.generator.service import generator_worker
from trustwatch.judge.client import EvaluatorClient, LocalEvaluators
from trustwatch.judge.dispatcher import dispatcher_worker
from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.runtime import ConsumerLoop
from trustwatch.platform.store import Store
from trustwatch.platform.targets import TargetSpec
from trustwatch.platform.telemetry import names
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.scheduler.core import plan_for
from trustwatch.scheduler.service import publish
from trustwatch.scheduler.suite import Suite

BackendFactory = Callable[[TargetSpec], Backend]


def _stderr_progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Stage:
    """One transport loop turning in a thread of its own until stopped; an error stops the loop and
    is kept for the calling thread to raise."""

    def __init__(self, worker: ConsumerLoop) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"embedded-{worker.service}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.worker.run_once(timeout=0.05)
        except BaseException as e:  # noqa: BLE001 - re-raised by the calling thread
            self.error = e

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def drained(self) -> bool:
        """Everything this stage took is committed (so its outputs are flushed downstream)."""
        consumer = self.worker._consumer
        return self.error is None and consumer is not None and consumer.lag() == 0


def _drained(stages: Sequence[_Stage]) -> bool:
    """Whether the stages, given in pipeline order, have all finished their work. Checked upstream
    first: a stage commits only after its outputs are flushed, so once an upstream stage is drained
    its work is visible as lag downstream, and a later check of that stage cannot miss it."""
    return all(s.drained() for s in stages)


def run_embedded(
    suite: Suite,
    targets: Sequence[TargetSpec],
    data_dir: Path,
    db_url: str,
    backend_factory: BackendFactory,
    settings: EvaluatorSettings | None = None,
    run_id: str | None = None,
    progress: Callable[[str], Any] = _stderr_progress,
    evaluators: EvaluatorClient | None = None,
    bars: bool | None = None,
    offline_only: bool = False,
) -> list[Report]:
    """Run a suite against targets to completion and return one report per target.

    Each invocation is a new run (a fresh run id), unless the latest run of the same suite, target
    and judge configuration is incomplete: then it is resumed (and ``progress`` says so), so
    re-running after a crash or an outage generates only what is missing: jobs whose judgments are
    already stored are not generated again, except those that ended with a transient error
    (endpoint or judge fault), which are retried. ``run_id`` (one target only) resumes or starts
    that run. At the end, the number of transient items is reported through ``progress``.
    ``offline_only``: the evaluators are offline-only (``--offline``), recorded in the manifest's
    judge identity.

    ``bars``: progress bars (rate, ETA) per stage on stderr; None shows them when stderr is a
    terminal, and periodic status lines through ``progress`` otherwise.
    """
    bus, topics = MemoryBus(), Topics()
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    show_bars = sys.stderr.isatty() if bars is None else bars
    store = Store(db_url)
    try:
        judged_with = settings if settings is not None else EvaluatorSettings()
        chosen = [
            plan_for(
                suite, t, data_dir, store, run_id if len(targets) == 1 else None, judged_with, offline_only=offline_only
            )
            for t in targets
        ]
        plans = [p for p, _ in chosen]
        published = {p.run_id: publish(p, bus, topics, store) for p in plans}
        for p, choice in chosen:
            done = len(p.jobs) - published[p.run_id]
            progress(
                f"{choice.message()}: {len(p.jobs)} prompts in {len(suite.tasks)} task(s)"
                + (f", {done} already done (resumed)" if done else "")
            )
        agg = Aggregator(store, metrics)
        stages: list[_Stage] = []  # in pipeline order: generators, then the dispatcher
        backends: list[Backend] = []
        for p in plans:
            if published[p.run_id]:
                backend = backend_factory(p.target)
                backends.append(backend)
                # outage_after=0: an embedded run does not wait for an endpoint that is down; its transient
                # errors are stored and the next invocation retries them
                stages.append(
                    _Stage(
                        generator_worker(bus, topics, p.target.name, p.target.backend, backend, metrics, outage_after=0)
                    )
                )
        stages.append(_Stage(dispatcher_worker(bus, topics, evaluators or LocalEvaluators(settings), metrics)))
        aggregators: list[ConsumerLoop] = list(aggregator_workers(bus, topics, agg, metrics))
        expected = sum(p.expected_judgments for p in plans)
        stored_before = sum(store.judgment_count(p.run_id) for p in plans)
        generate = tqdm(
            total=sum(published.values()),
            desc="generate",
            unit="prompt",
            disable=not show_bars,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        judge = tqdm(
            total=expected,
            initial=stored_before,
            desc="judge   ",
            unit="judgment",
            disable=not show_bars,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        completions = {"service": "generator", "topic": topics.completions}
        started, last = time.monotonic(), 0.0
        for s in stages:
            s.start()
        try:
            while True:
                moved = sum(w.run_once(timeout=0.02) for w in aggregators)
                failed = next((s.error for s in stages if s.error is not None), None)
                if failed is not None:
                    raise failed
                # Drained upstream stages, then one more aggregator round that finds nothing: done.
                done = not moved and _drained(stages) and not sum(w.run_once(timeout=0) for w in aggregators)
                now = time.monotonic()
                if now - last > (0.5 if show_bars else 2) or done:
                    stored = sum(store.judgment_count(p.run_id) for p in plans)
                    if show_bars:
                        generate.update(
                            int(registry.get_sample_value(names.MESSAGES_PRODUCED, completions) or 0) - generate.n
                        )
                        judge.update(stored - judge.n)
                    else:
                        progress(f"  judged {stored}/{expected} ({now - started:.0f} s)")
                    last = now
                if done:
                    break
        finally:
            for s in stages:
                s.stop()
            generate.close()
            judge.close()
        for w in [*(s.worker for s in stages), *aggregators]:
            w.close()
        for b in backends:
            b.close()
        for p in plans:
            agg.touch(p.run_id)
        agg.refresh()
        for p in plans:
            transient = store.transient_job_ids(p.run_id)
            if transient:
                progress(
                    f"run {p.run_id}: {len(transient)} item(s) ended with a transient error (endpoint "
                    "or judge fault, not the model's); re-running the same command retries exactly those"
                )
        reports = [agg.report(p.run_id) for p in plans]
        return [r for r in reports if r is not None]
    finally:
        store.close()

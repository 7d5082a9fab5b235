"""The embedded mode: every service in one process over the in-memory bus, evaluators in-process,
SQLite. Same services, tasks and metrics as the distributed mode; only the transport differs."""

from __future__ import annotations

import sys
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
from trustwatch.platform.runtime import Worker
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
        workers: list[Worker[Any]] = []
        backends: list[Backend] = []
        for p in plans:
            if published[p.run_id]:
                backend = backend_factory(p.target)
                backends.append(backend)
                workers.append(generator_worker(bus, topics, p.target.name, p.target.backend, backend, metrics))
        workers.append(dispatcher_worker(bus, topics, evaluators or LocalEvaluators(settings), metrics))
        workers.extend(aggregator_workers(bus, topics, agg, metrics))
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
        try:
            while True:
                moved = sum(w.run_once(timeout=0) for w in workers)
                now = time.monotonic()
                if now - last > (0.5 if show_bars else 2) or not moved:
                    stored = sum(store.judgment_count(p.run_id) for p in plans)
                    if show_bars:
                        generate.update(
                            int(registry.get_sample_value(names.MESSAGES_PRODUCED, completions) or 0) - generate.n
                        )
                        judge.update(stored - judge.n)
                    else:
                        progress(f"  judged {stored}/{expected} ({now - started:.0f} s)")
                    last = now
                if not moved:
                    break
        finally:
            generate.close()
            judge.close()
        for b in backends:
            b.close()
        for w in workers:
            w.close()
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

"""Wires the scheduler: plan each target's run of a suite, record it, publish its jobs, exit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from trustwatch.platform import config, wiring
from trustwatch.platform.store import Store
from trustwatch.platform.targets import parse_targets
from trustwatch.scheduler.core import plan_run
from trustwatch.scheduler.service import publish
from trustwatch.scheduler.suite import load_suite


def main(
    suite_path: str,
    targets: Sequence[str] | None,
    data_dir: Path,
    run_id: str | None = None,
    db: str | None = None,
    record: bool = False,
    partitions: int = 1,
    bootstrap: str | None = None,
) -> int:
    """Publish; prints one JSON line per run. ``db`` (or TRUSTWATCH_DB_URL with ``record``) records the
    run and skips jobs already judged."""
    suite = load_suite(suite_path)
    specs = parse_targets(targets, suite.targets)
    plans = [plan_run(suite, t, data_dir, run_id if len(specs) == 1 else None) for t in specs]
    url = db or (config.env("TRUSTWATCH_DB_URL") if record else "")
    store = Store(url) if url else None
    bus = wiring.kafka(bootstrap)
    try:
        for p in plans:
            n = publish(p, bus, wiring.topics(), store, partitions=partitions)
            print(
                json.dumps(
                    {
                        "run_id": p.run_id,
                        "target": p.target.name,
                        "jobs": len(p.jobs),
                        "published": n,
                        "expected_judgments": p.expected_judgments,
                    }
                )
            )
    finally:
        bus.close()
        if store:
            store.close()
    return 0

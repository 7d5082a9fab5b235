"""Wires the scheduler.

One-shot (``--suite``): plan each target's run of a suite, record it, publish its jobs, exit. A new
invocation starts a new run unless the latest comparable run is incomplete (then it is resumed).

Service (``--config``): a long-lived loop over a schedule file (:mod:`trustwatch.scheduler.schedule`)
that sleeps until the next slot of any schedule, then plans, records and publishes one run per target
of that schedule, named by its slot (a retried pod resumes the same run). At start the latest slot of
each schedule is fired once if its runs are not complete (catch-up of that slot only). SIGTERM stops
the loop between slots.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trustwatch.benchmark.evaluators.base import EvaluatorSettings, settings_from_env
from trustwatch.platform import config, wiring
from trustwatch.platform.bus.base import Bus, Topics
from trustwatch.platform.store import Store
from trustwatch.platform.targets import parse_targets
from trustwatch.scheduler.core import build_plan, plan_for, prepare, slot_run_id
from trustwatch.scheduler.schedule import Schedule, ScheduleConfig, load_config
from trustwatch.scheduler.service import publish
from trustwatch.scheduler.suite import load_suite

log = logging.getLogger(__name__)


def main(
    suite_path: str,
    targets: Sequence[str] | None,
    data_dir: Path,
    run_id: str | None = None,
    db: str | None = None,
    record: bool = False,
    partitions: int = 1,
    bootstrap: str | None = None,
    deadline_s: float | None = None,
) -> int:
    """Publish; prints one JSON line per run. ``db`` (or TRUSTWATCH_DB_URL with ``record``) records the
    run, resumes the latest comparable run when it is incomplete, and skips jobs already judged.
    ``deadline_s``: seconds until a new run is overdue (default TRUSTWATCH_RUN_DEADLINE_S; 0: none)."""
    deadline = config.env_int("TRUSTWATCH_RUN_DEADLINE_S") if deadline_s is None else deadline_s
    suite = load_suite(suite_path)
    specs = parse_targets(targets, suite.targets)
    url = db or (config.env("TRUSTWATCH_DB_URL") if record else "")
    store = Store(url, migrate=config.db_migrate()) if url else None
    settings = settings_from_env()
    try:
        chosen = [
            plan_for(suite, t, data_dir, store, run_id if len(specs) == 1 else None, settings, deadline_s=deadline)
            for t in specs
        ]
        bus = wiring.kafka(bootstrap)
        try:
            for p, choice in chosen:
                n = publish(p, bus, wiring.topics(), store, partitions=partitions)
                print(
                    json.dumps(
                        {
                            "run_id": p.run_id,
                            "status": choice.message(),
                            "target": p.target.name,
                            "jobs": len(p.jobs),
                            "published": n,
                            "expected_judgments": p.expected_judgments,
                        }
                    )
                )
        finally:
            bus.close()
    finally:
        if store:
            store.close()
    return 0


# -- the long-lived service ----------------------------------------------------------------------------


def fire(
    schedule: Schedule,
    slot: datetime,
    data_dir: Path,
    bus: Bus,
    topics: Topics,
    store: Store,
    settings: EvaluatorSettings,
    partitions: int = 1,
    deadline_s: float = 0,
) -> list[dict[str, Any]]:
    """Plan, record and publish the run of each target of ``schedule`` for ``slot``; one summary per
    target. A target that fails to plan or publish is logged and skipped; the others still run.
    ``deadline_s``: seconds until a new run is overdue (0: no deadline)."""
    out: list[dict[str, Any]] = []
    for target in schedule.targets:
        run_id = slot_run_id(schedule.name, slot, target.name)
        try:
            existing = store.run(run_id)
            if existing is not None and store.is_complete(existing):
                out.append({"run_id": run_id, "target": target.name, "status": "complete", "published": 0})
                continue
            prep = prepare(schedule.suite, target, data_dir, settings, schedule.sample)
            extra = {
                "schedule": {
                    "name": schedule.name,
                    "cron": schedule.cron,
                    "slot": slot.astimezone(timezone.utc).isoformat(),
                    "suite": schedule.suite_name,
                }
            }
            plan = build_plan(prep, run_id, extra, deadline_s=deadline_s)
            n = publish(plan, bus, topics, store, partitions=partitions)
        except Exception:  # noqa: BLE001 - one target's failure must not stop the others or the loop
            log.exception("schedule %s slot %s: run %s failed to start", schedule.name, slot, run_id)
            out.append({"run_id": run_id, "target": target.name, "status": "failed", "published": 0})
            continue
        status = "resumed" if existing is not None else "new"
        log.info("schedule %s slot %s: %s run %s, %d jobs published", schedule.name, slot, status, run_id, n)
        out.append(
            {
                "run_id": run_id,
                "target": target.name,
                "status": status,
                "published": n,
                "jobs": len(plan.jobs),
            }
        )
    return out


class ScheduleLoop:
    """Fires each schedule's slots on time. ``now`` and ``sleep`` are injectable (tests use a fake
    clock); ``sleep`` returns True when the loop should stop (default: waits on :attr:`stopped`)."""

    def __init__(
        self,
        cfg: ScheduleConfig,
        data_dir: Path,
        bus: Bus,
        topics: Topics,
        store: Store,
        settings: EvaluatorSettings | None = None,
        partitions: int = 1,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], bool] | None = None,
        on_fire: Callable[[dict[str, Any]], None] | None = None,
        heartbeat: Path | None = None,
        deadline_s: float = 0,
    ) -> None:
        self.cfg, self.data_dir, self.bus, self.topics, self.store = cfg, data_dir, bus, topics, store
        self.settings = settings if settings is not None else settings_from_env()
        self.partitions = partitions
        self.deadline_s = deadline_s
        self.stopped = threading.Event()
        self.now = now or (lambda: datetime.now(timezone.utc))
        self.sleep = sleep or self._wait
        #: a file touched at least every HEARTBEAT_S while the loop is alive (a liveness probe reads it)
        self.heartbeat = heartbeat
        self.on_fire = on_fire or (lambda summary: print(json.dumps(summary), flush=True))
        #: the last slot handled per schedule
        self.last: dict[str, datetime] = {}

    HEARTBEAT_S = 30.0

    def stop(self) -> None:
        self.stopped.set()

    def beat(self) -> None:
        if self.heartbeat is not None:
            try:
                self.heartbeat.touch()
            except OSError:
                log.warning("cannot touch heartbeat file %s", self.heartbeat)

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` in heartbeat-sized steps; True as soon as the loop is stopped."""
        end = time.monotonic() + seconds
        while True:
            self.beat()
            left = end - time.monotonic()
            if left <= 0:
                return self.stopped.is_set()
            if self.stopped.wait(min(left, self.HEARTBEAT_S)):
                return True

    def _fire(self, schedule: Schedule, slot: datetime) -> None:
        self.beat()
        for summary in fire(
            schedule,
            slot,
            self.data_dir,
            self.bus,
            self.topics,
            self.store,
            self.settings,
            self.partitions,
            self.deadline_s,
        ):
            self.on_fire({"schedule": schedule.name, "slot": slot.isoformat(), **summary})
        self.last[schedule.name] = slot

    def catch_up(self) -> None:
        """Fire each schedule's latest slot (at or before now) once; complete runs are skipped."""
        at = self.now()
        for s in self.cfg.schedules:
            self._fire(s, s.latest_slot(at))

    def step(self) -> bool:
        """Sleep until the next slot of any schedule and fire what is due; False once stopped."""
        at = self.now()
        upcoming = {s.name: s.next_slot(self.last.get(s.name, at)) for s in self.cfg.schedules}
        wake = min(upcoming.values())
        delay = (wake - at).total_seconds()
        if delay > 0:
            log.info("next slot %s in %.0f s", wake.isoformat(), delay)
            if self.sleep(delay) or self.stopped.is_set():
                return False
        at = self.now()
        for s in self.cfg.schedules:
            slot = upcoming[s.name]
            if slot <= at:
                # Fire the latest due slot only: slots missed in between are not replayed.
                self._fire(s, s.latest_slot(at))
        return not self.stopped.is_set()

    def run(self, max_steps: int | None = None) -> None:
        self.beat()
        self.catch_up()
        steps = 0
        while not self.stopped.is_set() and (max_steps is None or steps < max_steps):
            if not self.step():
                break
            steps += 1


def serve_main(
    config_path: str,
    data_dir: Path,
    db: str | None = None,
    partitions: int = 1,
    bootstrap: str | None = None,
    heartbeat: str | None = None,
    deadline_s: float | None = None,
) -> int:
    """`trustwatch scheduler --config F`: run the schedule loop until SIGTERM or SIGINT. ``heartbeat``:
    a file touched while the loop is alive (for a liveness probe); ``deadline_s``: seconds until a
    run is overdue (default TRUSTWATCH_RUN_DEADLINE_S; 0: none)."""
    cfg = load_config(config_path)
    url = db or config.env("TRUSTWATCH_DB_URL")
    if not url:
        from trustwatch.scheduler.schedule import ScheduleError

        raise ScheduleError("scheduler --config records its runs: pass --db or set TRUSTWATCH_DB_URL")
    store = Store(url, migrate=config.db_migrate())
    bus = wiring.kafka(bootstrap)
    loop = ScheduleLoop(
        cfg,
        data_dir,
        bus,
        wiring.topics(),
        store,
        partitions=partitions,
        heartbeat=Path(heartbeat) if heartbeat else None,
        deadline_s=config.env_int("TRUSTWATCH_RUN_DEADLINE_S") if deadline_s is None else deadline_s,
    )

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping the scheduler", signum)
        loop.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    names = ", ".join(f"{s.name} ({s.cron}, {len(s.targets)} target(s))" for s in cfg.schedules)
    log.info("scheduler: %d schedule(s) from %s: %s", len(cfg.schedules), config_path, names)
    try:
        loop.run()
    finally:
        bus.close()
        store.close()
    return 0

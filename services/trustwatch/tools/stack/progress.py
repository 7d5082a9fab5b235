"""Progress of ``trustwatch stack run``: per run, how many of its jobs the generators answered and
how many of its judgments the aggregator stored, with rate and ETA, until every run is complete.

The counts come from what the stack already serves over HTTP (no new metric): the aggregator's
``/metrics`` (``trustwatch_run_progress``: judgments stored and expected of each incomplete run) and
``/runs`` (which runs are complete), and each generator's ``/metrics`` (``trustwatch_completions_total``
per target). :class:`StackProgress` is the pure part: it turns successive :class:`Snapshot` readings
into bars (on a terminal) or periodic status lines (in a CI log, where bars would fill it with
carriage returns); :func:`watch` polls a :class:`Source` until the runs are complete.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from prometheus_client.parser import text_string_to_metric_families
from tqdm import tqdm

from trustwatch.platform import wiring
from trustwatch.platform.bus import Bus
from trustwatch.platform.telemetry import names
from trustwatch.scheduler.core import Plan
from trustwatch.tools.stack.local import StackState

#: status lines (no bars): one line per stage at most this often, and at the end
LINE_EVERY_S = 10.0
_LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"


@dataclass(frozen=True)
class Snapshot:
    """The stack's counts at one poll. ``completions``: per target, completions its generators
    produced since they started (the counter is per process, so :class:`StackProgress` counts from a
    baseline taken before publishing)."""

    stored: dict[str, int] = field(default_factory=dict)  # run id -> judgments stored (incomplete runs)
    expected: dict[str, int] = field(default_factory=dict)  # run id -> judgments expected
    completed: frozenset[str] = frozenset()  # run ids the aggregator marked complete
    completions: dict[str, int] = field(default_factory=dict)  # target -> completions produced


@dataclass(frozen=True)
class RunInfo:
    """A published run: its id, target, jobs published and the judgments it expects."""

    run_id: str
    target: str
    jobs: int
    expected_judgments: int


class Source(Protocol):
    """Where the counts come from (the stack's HTTP endpoints, or a fake in tests)."""

    def snapshot(self) -> Snapshot: ...

    def report(self, run_id: str) -> dict[str, Any]: ...


@dataclass
class _Stage:
    desc: str
    unit: str
    total: int
    started: float
    n: int = 0
    bar: tqdm[Any] | None = None
    finished: float | None = None  # when it reached its total: its rate stays that of its work
    shown_done: bool = False  # its last status line was written

    def line(self, now: float) -> str:
        elapsed = max((self.finished if self.finished is not None else now) - self.started, 0.0)
        text: str = tqdm.format_meter(
            self.n, self.total, elapsed, prefix=self.desc, unit=self.unit, bar_format=_LINE_FORMAT
        )
        return text


class StackProgress:
    """Per run, two stages: ``generate`` (completions of the run's target since ``baseline``, at most
    the jobs published) and ``judge`` (judgments stored, of those expected; all of them once the run
    is complete). With ``bars`` one tqdm bar per stage on ``file``; without, :meth:`advance` writes
    each stage's count, rate and ETA through ``write`` every ``every_s`` seconds and when it is done."""

    def __init__(
        self,
        runs: Sequence[RunInfo],
        baseline: Snapshot,
        bars: bool,
        write: Callable[[str], Any],
        file: IO[str] | None = None,
        every_s: float = LINE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runs = list(runs)
        self._baseline = baseline
        self._write = write
        self._every_s = every_s
        self._clock = clock
        now = clock()
        self._last_lines: float | None = None
        self.stages: dict[tuple[str, str], _Stage] = {}
        width = max((len(r.run_id) for r in runs), default=0)
        for r in self._runs:
            for kind, unit, total in (("generate", "prompt", r.jobs), ("judge", "judgment", r.expected_judgments)):
                stage = _Stage(f"{kind:<8} {r.run_id:<{width}}", unit, total, now)
                if bars:
                    stage.bar = tqdm(
                        total=total, desc=stage.desc, unit=unit, file=file or sys.stderr, dynamic_ncols=True, leave=True
                    )
                self.stages[(r.run_id, kind)] = stage

    def advance(self, snap: Snapshot) -> None:
        """Move every stage to the counts of ``snap`` (counts never go back: a poll that failed or a
        restarted generator reads lower). Status lines: each stage until its line says it is done."""
        now = self._clock()
        for r in self._runs:
            produced = snap.completions.get(r.target, 0) - self._baseline.completions.get(r.target, 0)
            if r.run_id in snap.completed:
                stored, produced = r.expected_judgments, r.jobs
            else:
                stored = snap.stored.get(r.run_id, 0)
            self._set(self.stages[(r.run_id, "generate")], produced, now)
            self._set(self.stages[(r.run_id, "judge")], stored, now)
        if all(s.bar is None for s in self.stages.values()):
            due = self._last_lines is None or now - self._last_lines >= self._every_s
            if due or self.done(snap):
                for s in self.stages.values():
                    if not s.shown_done:
                        self._write(s.line(now))
                        s.shown_done = s.finished is not None
                self._last_lines = now

    def done(self, snap: Snapshot) -> bool:
        return all(r.run_id in snap.completed for r in self._runs)

    @staticmethod
    def _set(stage: _Stage, n: int, now: float) -> None:
        n = min(max(n, stage.n), stage.total)
        if stage.bar is not None and n > stage.n:
            stage.bar.update(n - stage.n)
        stage.n = n
        if n == stage.total and stage.finished is None:
            stage.finished = now

    def close(self) -> None:
        for s in self.stages.values():
            if s.bar is not None:
                s.bar.close()


def watch(
    source: Source,
    progress: StackProgress,
    runs: Iterable[RunInfo],
    timeout: float,
    poll: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Any] = time.sleep,
) -> list[dict[str, Any]]:
    """Poll ``source`` and advance ``progress`` until every run is complete; return their reports
    (the aggregator's ``/report`` JSON), in the order of ``runs``. Raises TimeoutError after
    ``timeout`` seconds, naming the runs still incomplete and their counts."""
    order = [r.run_id for r in runs]
    reports: dict[str, dict[str, Any]] = {}
    deadline = clock() + timeout
    snap = Snapshot()
    try:
        while True:
            snap = source.snapshot()
            progress.advance(snap)
            for run_id in order:
                if run_id in snap.completed and run_id not in reports:
                    report = source.report(run_id)
                    if report.get("complete"):
                        reports[run_id] = report
            if len(reports) == len(order):
                return [reports[r] for r in order]
            if clock() >= deadline:
                left = [r for r in order if r not in reports]
                counts = ", ".join(
                    f"{r} ({snap.stored.get(r, 0)}/{snap.expected.get(r, '?')} judgments stored)" for r in left
                )
                all_stored = any(r in snap.expected and snap.stored.get(r, 0) >= snap.expected[r] for r in left)
                raise TimeoutError(
                    f"run(s) not complete after {timeout:.0f} s: {counts}; "
                    + (
                        "every judgment of a run is stored but some ended with a transient error (an endpoint "
                        "or judge was unreachable; `trustwatch report RUN_ID --db ...` lists them); "
                        if all_stored
                        else ""
                    )
                    + "the services' logs are in the stack's --dir, `trustwatch stack status` says which are running"
                )
            sleep(poll)
    finally:
        progress.close()


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def publish_and_watch(
    state: StackState,
    plans: Sequence[Plan],
    timeout: float,
    token: str = "",
    bars: bool | None = None,
    write: Callable[[str], Any] = _stderr_line,
    source: Source | None = None,
    bus: Bus | None = None,
    poll: float = 1.0,
) -> list[dict[str, Any]]:
    """Publish ``plans`` to the stack's Kafka and wait for their runs with progress (``bars``: None
    shows bars when stderr is a terminal, status lines otherwise); return the runs' reports.
    ``source`` and ``bus`` (closed here) replace the stack's HTTP endpoints and Kafka, for tests."""
    from trustwatch.platform.bus import kafka_bus
    from trustwatch.scheduler.service import publish

    source = source or HttpSource(state, token)
    baseline = source.snapshot()  # before publishing: the generators' counters count from here
    runs: list[RunInfo] = []
    bus = bus or kafka_bus(state.bootstrap)
    try:
        for p in plans:
            n = publish(p, bus, wiring.topics())
            runs.append(RunInfo(p.run_id, p.target.name, n, p.expected_judgments))
            write(f"run {p.run_id} ({p.target.name}): published {n} jobs, {p.expected_judgments} judgments expected")
    finally:
        bus.close()
    show_bars = sys.stderr.isatty() if bars is None else bars
    return watch(source, StackProgress(runs, baseline, show_bars, write), runs, timeout, poll=poll)


# -- the stack's HTTP endpoints -------------------------------------------------------------------------


def parse_run_progress(text: str) -> tuple[dict[str, int], dict[str, int]]:
    """(stored, expected) judgments per run id from Prometheus text with ``trustwatch_run_progress``."""
    stored: dict[str, int] = {}
    expected: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == names.RUN_PROGRESS:
                into = stored if s.labels.get("kind") == "stored" else expected
                into[s.labels.get("run", "")] = int(s.value)
    return stored, expected


def parse_completions(text: str) -> dict[str, int]:
    """Completions produced per target (every status) from Prometheus text with ``trustwatch_completions_total``."""
    out: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == names.COMPLETIONS:
                target = s.labels.get("target", "")
                out[target] = out.get(target, 0) + int(s.value)
    return out


class HttpSource:
    """Counts from a running local stack: the aggregator's ``/metrics`` and ``/runs`` and the
    generators' ``/metrics``. ``token``: the aggregator's bearer token (TRUSTWATCH_API_TOKEN), when it
    requires one. A service that does not answer a poll is read as having no counts (the bars hold)."""

    def __init__(self, state: StackState, token: str = "", timeout: float = 10.0) -> None:
        self._aggregator = state.aggregator_url
        self._generators = [
            f"http://127.0.0.1:{port}/metrics"
            for name, port in sorted(state.metrics_ports.items())
            if name.startswith("generator")
        ]
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout

    def _get(self, url: str, auth: bool = False) -> bytes:
        request = urllib.request.Request(url, headers=self._headers if auth else {})
        with urllib.request.urlopen(request, timeout=self._timeout) as r:
            body: bytes = r.read()
            return body

    def snapshot(self) -> Snapshot:
        stored: dict[str, int] = {}
        expected: dict[str, int] = {}
        completed: set[str] = set()
        completions: dict[str, int] = {}
        try:
            stored, expected = parse_run_progress(self._get(f"{self._aggregator}/metrics").decode())
            for run in json.loads(self._get(f"{self._aggregator}/runs", auth=True)):
                expected.setdefault(run["run_id"], int(run.get("expected_judgments") or 0))
                if run.get("completed_unix_ms") is not None:
                    completed.add(run["run_id"])
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise PermissionError(
                    f"the aggregator at {self._aggregator} requires a bearer token: set TRUSTWATCH_API_TOKEN"
                ) from exc
        except OSError:
            pass
        for url in self._generators:
            try:
                for target, n in parse_completions(self._get(url).decode()).items():
                    completions[target] = completions.get(target, 0) + n
            except OSError:
                pass
        return Snapshot(stored, expected, frozenset(completed), completions)

    def report(self, run_id: str) -> dict[str, Any]:
        try:
            report: dict[str, Any] = json.loads(self._get(f"{self._aggregator}/report?run={run_id}", auth=True))
            return report
        except OSError:
            return {}

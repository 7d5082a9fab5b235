"""The aggregator: consumes judgments, run events and dead letters, stores them, keeps Prometheus
gauges of every task metric of each target's newest complete run (restored from the database at
start), and serves reports over HTTP.

Completion is exact: a run's plan (PLANNED run events) lists every (job, evaluator) pair it expects,
and the run is complete when each has a settled judgment (``Store.is_complete``). A dead-lettered
job would keep its run incomplete for ever, so every dead letter is stored (payload kept for
``trustwatch dlq replay``) and each planned pair of its job without a settled judgment gets a
POISON error judgment: the item is counted as an error and the run completes. A dead letter may
arrive before its run's plan; then its pairs are poisoned when the plan is stored (:meth:`refresh`).
An incomplete run past its deadline exports its missing judgments (``trustwatch_run_overdue_missing``).

Comparisons: when a target's newest complete run changes, it is compared (``benchmark.compare``: paired
tests, Holm-adjusted p-values, direction-aware verdicts) with the target's previous complete run of the
same comparable key (``against="previous"``) and with the target's pinned baseline (``against="baseline"``,
``Store.pin_baseline``), once: the result is stored (``comparisons`` table, served at ``/compare``) and a
restart or re-export reuses it. The verdict, difference, its CI and the adjusted p-value are exported
per metric (names.COMPARISON_*), for the newest run only, like the trust gauges.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from trustwatch.benchmark.compare import VERDICTS, Comparison, compare
from trustwatch.benchmark.scoring import Report, build_report
from trustwatch.platform.bus.base import Bus, Topics
from trustwatch.platform.messages import (
    InvalidMessage,
    decode_judgment,
    decode_run_event,
    judgment_id,
    lift_legacy_ref,
    now_ms,
    parse_message,
)
from trustwatch.platform.runtime import Result, Worker, batch_linger_s, is_transient
from trustwatch.platform.store import DeadLetterRow, PoisonCandidate, RunRow, Store
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

log = logging.getLogger(__name__)

#: Missing pairs a report lists (``Report.missing``); ``Report.n_missing`` counts them all.
REPORT_MISSING = 100
#: Seconds between recounts of an overdue run's missing judgments when nothing new arrived for it.
OVERDUE_RECHECK_S = 60.0
#: Least seconds between two refreshes of the long-running aggregator (:meth:`Aggregator.refresh_if_due`):
#: a refresh queries each dirty run as a whole, so one per stored batch kept the service busy (make bench
#: P3 profile); completion and gauges lag by at most this.
REFRESH_EVERY_S = 1.0
#: Runs whose first PLANNED event :meth:`Aggregator.handle_run_events` remembers (the newest).
PLAN_SEEN_RUNS = 1000
#: Longest dead-letter reason copied into a poison judgment's error.
_REASON_CHARS = 500
#: Seconds between reads of the pinned baselines (a pin made by `trustwatch baseline pin` in another
#: process is picked up within this time).
BASELINE_RECHECK_S = 30.0
#: What a target's newest run is compared with (the ``against`` label).
PREVIOUS, BASELINE = "previous", "baseline"
#: Least seconds between two retention prunes (``retention_days`` > 0; :meth:`Store.prune`).
PRUNE_EVERY_S = 3600.0


def decode_dead_letter(data: bytes) -> pb.DeadLetter:
    msg = parse_message(pb.DeadLetter, data)
    if not msg.source_topic:
        raise InvalidMessage("DeadLetter lacks required field(s): source_topic")
    return msg


def dead_letter_row(dl: pb.DeadLetter, topics: Topics) -> DeadLetterRow:
    """A dead letter as stored, attributed to what it belongs to.

    The payload is decoded by its source topic: a job topic's as a PromptJob, the completions
    topic's as a Completion, the judgments topic's as a Judgment (then only that evaluator's pair is
    concerned), the runs topic's as a RunEvent (a run, no job), the dead-letter topic's as the
    DeadLetter it wraps. When the payload does not decode or names no job, the message key is taken
    as the job id (every producer keys jobs, completions and judgments by job id).
    """
    run_id, job, evaluator, record = _attribute(dl.source_topic, dl.payload, dl.key, topics, nested=False)
    return DeadLetterRow(
        source_topic=dl.source_topic,
        source_partition=dl.partition,
        source_offset=dl.offset,
        key=dl.key,
        payload=dl.payload,
        reason=dl.reason,
        service=dl.service,
        created_unix_ms=dl.created_unix_ms or now_ms(),
        run_id=run_id,
        job_id=job,
        evaluator=evaluator,
        record_json=record,
    )


def _attribute(
    topic: str, payload: bytes, key: bytes, topics: Topics, nested: bool
) -> tuple[str | None, str | None, str | None, str | None]:
    """(run id, job id, evaluator, record JSON) of a dead-lettered message; None where unknown."""
    msg: pb.PromptJob | pb.Completion | pb.Judgment | None = None
    try:
        if topic == topics.runs:
            return pb.RunEvent.FromString(payload).run_id or None, None, None, None
        if topic == topics.dlq and not nested:
            inner = pb.DeadLetter.FromString(payload)
            return _attribute(inner.source_topic, inner.payload, inner.key, topics, nested=True)
        if topic.startswith(topics.jobs("")):
            msg = pb.PromptJob.FromString(payload)
        elif topic == topics.completions:
            msg = pb.Completion.FromString(payload)
        elif topic == topics.judgments:
            msg = pb.Judgment.FromString(payload)
        if msg is not None:
            lift_legacy_ref(msg)
    except (DecodeError, ValueError):
        msg = None
    if msg is not None and msg.ref.job_id:
        evaluator = (msg.evaluator or None) if isinstance(msg, pb.Judgment) else None
        return msg.ref.run_id or None, msg.ref.job_id, evaluator, msg.record_json or None
    if topic == topics.runs or topic == topics.dlq or not key:
        return None, None, None, None
    return None, key.decode("utf-8", "replace"), None, None


def poison_judgment(c: PoisonCandidate) -> pb.Judgment:
    """The error result of a planned pair whose message was dead-lettered (no payload text in it)."""
    reason = c.reason if len(c.reason) <= _REASON_CHARS else c.reason[: _REASON_CHARS - 1] + "\u2026"
    return pb.Judgment(
        ref=pb.JobRef(
            job_id=c.pair.job_id,
            run_id=c.run_id,
            task=c.pair.task,
            item_id=c.pair.item_id,
            sample=c.pair.sample,
            target=c.target,
        ),
        evaluator=c.pair.evaluator,
        label="error",
        valid=False,
        score=math.nan,
        error=f"dead-lettered by {c.service}: {reason}",
        error_kind=pb.ERROR_KIND_POISON,
        record_json=c.record_json,
        created_unix_ms=now_ms(),
    )


class Aggregator:
    """Stores judgments and run events and exports the trust gauges of each target's newest
    complete run (by created time): a late or redelivered judgment of an older run never replaces a
    newer run's gauges, and :meth:`start` restores the gauges from the database after a restart."""

    def __init__(
        self, store: Store, metrics: ServiceMetrics, topics: Topics | None = None, retention_days: int = 0
    ) -> None:
        self.store = store
        #: days raw replies are kept (TRUSTWATCH_RETENTION_DAYS); 0: for ever
        self.retention_days = retention_days
        self._pruned_at: float | None = None  # monotonic time of the last prune
        self.metrics = metrics
        #: topic names, to read a dead letter's payload by its source topic
        self.topics = topics or Topics()
        # incomplete runs with a deadline: run id -> (deadline unix ms, target); and when each
        # overdue run's missing judgments were last counted (monotonic seconds)
        self._deadlines: dict[str, tuple[int, str]] = {}
        self._overdue_checked: dict[str, float] = {}
        self._dirty: set[str] = set()
        self._last_refresh: float | None = None  # monotonic start of the last refresh_if_due refresh
        self._stale_targets: set[str] = set()  # targets whose newest complete run must be (re-)exported
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        # per target: the run whose gauges are exported, and the label sets it exported
        self._exported_run: dict[str, str] = {}
        self._exported_labels: dict[str, set[tuple[str, ...]]] = {}
        # per (target, against): the exported comparison's info labels and metric label sets; per
        # target, the baseline run its exported comparison used (None: no baseline); when baselines
        # were last read
        self._cmp_info: dict[tuple[str, str], tuple[str, ...]] = {}
        self._cmp_labels: dict[tuple[str, str], set[tuple[str, ...]]] = {}
        self._baseline_used: dict[str, str | None] = {}
        self._baselines_checked: float | None = None
        #: seconds each of the last comparisons computed took (also logged)
        self.compare_seconds: deque[float] = deque(maxlen=100)
        # per run, decided at its first PLANNED event: whether the store held its whole plan then
        # (a scheduler with the database records it before publishing), so its PLANNED events need
        # not be stored again; the newest PLAN_SEEN_RUNS runs
        self._plan_held: OrderedDict[str, bool] = OrderedDict()

    # -- logic ---------------------------------------------------------------------------------
    def handle_judgments(self, batch: Sequence[pb.Judgment]) -> list[Result]:
        new = self.store.store_judgments(batch)
        self.metrics.stored.inc(new)
        self.metrics.duplicates.inc(len(batch) - new)
        with self._lock:
            self._dirty.update(j.ref.run_id for j in batch)
        return [Result() for _ in batch]

    def handle_run_events(self, batch: Sequence[pb.RunEvent]) -> list[Result]:
        """Record runs (STARTED, JOBS_PUBLISHED) and their plans (PLANNED; skipped for a run whose
        whole plan the store held at its first PLANNED event: the scheduler recorded it)."""
        for ev in batch:
            if ev.kind == pb.RunEvent.PLANNED:
                if not self._plan_already_held(ev.run_id):
                    self.store.record_plan(ev.run_id, ev.planned)
            else:
                manifest = json.loads(ev.manifest_json) if ev.manifest_json else {}
                self.store.record_run(ev.run_id, ev.target, manifest, ev.expected_jobs, ev.expected_judgments)
            with self._lock:
                self._dirty.add(ev.run_id)
        return [Result() for _ in batch]

    def _plan_already_held(self, run_id: str) -> bool:
        """Whether the store held the run's whole plan (``expected_judgments`` pairs) at the run's
        first PLANNED event seen here. Storing a plan is idempotent, so skipping is only a saving:
        when the scheduler has the database it stores the plan before it publishes the events, and
        storing them again cost this service a third of its CPU in ``make bench`` P3."""
        held = self._plan_held.get(run_id)
        if held is None:
            run = self.store.run(run_id)
            held = run is not None and self.store.planned_count(run_id) >= run.expected_judgments > 0
            self._plan_held[run_id] = held
            while len(self._plan_held) > PLAN_SEEN_RUNS:
                self._plan_held.popitem(last=False)
        return held

    def handle_dead_letters(self, batch: Sequence[pb.DeadLetter]) -> list[Result]:
        """Store dead letters and turn the planned pairs of their jobs into POISON judgments.

        A dead letter of the dead-letter topic itself (one this handler could not store) that fails
        again is logged and dropped rather than dead-lettered again, so nothing loops."""
        try:
            rows = [dead_letter_row(dl, self.topics) for dl in batch]
            self.store.store_dead_letters(rows)
            self.poison(job_ids={r.job_id for r in rows if r.job_id})
        except Exception as exc:
            if is_transient(exc) or len(batch) != 1 or batch[0].source_topic != self.topics.dlq:
                raise
            log.error(
                "dead letter of %s[%d]@%d cannot be stored (%s: %s); it stays on the dead-letter topic only",
                batch[0].source_topic,
                batch[0].partition,
                batch[0].offset,
                type(exc).__name__,
                exc,
            )
        return [Result() for _ in batch]

    def poison(self, run_id: str | None = None, job_ids: set[str] | None = None) -> int:
        """Store a POISON judgment for every planned pair (of a run, or of some jobs) that has no
        settled judgment and an unreplayed dead letter of its job; returns how many were new."""
        candidates = self.store.poison_candidates(run_id, job_ids)
        if not candidates:
            return 0
        out: dict[str, pb.Judgment] = {}
        for c in candidates:
            jid = judgment_id(c.pair.job_id, c.pair.evaluator)
            if jid not in out:  # several dead letters of one job: the first one's reason
                out[jid] = poison_judgment(c)
        new = self.store.store_judgments(list(out.values()))
        self.metrics.stored.inc(new)
        with self._lock:
            self._dirty.update(c.run_id for c in candidates)
        log.warning("%d planned judgment(s) recorded as POISON errors (their messages were dead-lettered)", len(out))
        return new

    def touch(self, run_id: str) -> None:
        """Have the next :meth:`refresh` recompute this run."""
        with self._lock:
            self._dirty.add(run_id)

    def start(self) -> int:
        """Restore what a restart lost, before consuming: every incomplete run is rescanned (one that
        got its last judgment while the aggregator was down is marked complete now), and the newest
        complete run of every target is exported again, completion time included. Returns the
        number of targets exported."""
        runs = self.store.runs()
        with self._lock:
            self._dirty.update(r.run_id for r in runs if r.completed_unix_ms is None)
            self._deadlines.update(
                (r.run_id, (_deadline(r), r.target)) for r in runs if r.completed_unix_ms is None and _deadline(r)
            )
            self._stale_targets.update(r.target for r in runs if r.target)
        self.refresh()
        exported = len(self._exported_run)
        log.info("aggregator start: %d run(s), gauges of %d target(s) restored", len(runs), exported)
        return exported

    def report(self, run_id: str) -> Report | None:
        run = self.store.run(run_id)
        rows = self.store.judgments(run_id)
        if run is None and not rows:
            return None
        target = run.target if run else rows[0].target
        complete = run is not None and self.store.is_complete(run)
        report = build_report(run_id, target, rows, run.manifest if run else {}, complete)
        if run is not None and not complete:
            report.n_missing = self.store.missing_judgments(run)
            report.missing = [p.to_dict() for p in self.store.missing_pairs(run_id, REPORT_MISSING)]
            deadline = _deadline(run)
            report.overdue = bool(deadline) and now_ms() > deadline
        return report

    def newest_complete_run(self, target: str) -> RunRow | None:
        """The complete run of ``target`` created last (ties broken by run id), or None."""
        done = [r for r in self.store.runs(target) if r.target == target and r.completed_unix_ms is not None]
        return max(done, key=lambda r: (r.created_unix_ms, r.run_id)) if done else None

    def refresh_if_due(self, every_s: float = REFRESH_EVERY_S, now: float | None = None) -> bool:
        """:meth:`refresh`, unless the last one through this method began less than ``every_s`` seconds
        ago (``now``: a monotonic time, for tests). The service loop calls it after every turn; an idle
        turn lasts the poll timeout, so the last judgments of a run are refreshed on the next turn.
        Returns whether it refreshed."""
        clock = time.monotonic() if now is None else now
        if self._last_refresh is not None and clock - self._last_refresh < every_s:
            return False
        self._last_refresh = clock
        self.refresh()
        return True

    def refresh(self) -> None:
        """Recompute progress of runs that got new judgments (first turning the planned pairs of
        their dead-lettered jobs into POISON judgments), mark those now complete, drop their progress
        and overdue series, export each touched target's newest complete run, and export the
        missing judgments of incomplete runs past their deadline."""
        with self._refresh_lock:
            with self._lock:
                dirty, self._dirty = self._dirty, set()
                targets, self._stale_targets = self._stale_targets, set()
            touched: dict[str, set[str]] = {t: set() for t in targets}
            for run_id in sorted(dirty):
                run = self.store.run(run_id)
                if run is None:  # judgments before their run event: nothing says when it is complete
                    continue
                if run.completed_unix_ms is None:
                    # dead letters that arrived before the plan (or known by job id only) get their run
                    self.store.attribute_dead_letters(run_id)
                    self.poison(run_id=run_id)
                    with self._lock:
                        self._dirty.discard(run_id)
                stored = self.store.judgment_count(run_id)
                progress = self.metrics.run_progress
                # Complete: every planned (job, evaluator) pair has a settled judgment (a transient
                # error is retried by re-running, so a run with one is not a measurement yet); see
                # Store.is_complete.
                if run.completed_unix_ms is None and not self.store.is_complete(run):
                    progress.labels(run_id, run.target, "stored").set(stored)
                    progress.labels(run_id, run.target, "expected").set(run.expected_judgments)
                    if _deadline(run):
                        self._deadlines[run_id] = (_deadline(run), run.target)
                        self._overdue_checked.pop(run_id, None)  # recount now if overdue
                    continue
                if run.completed_unix_ms is None:
                    self.store.mark_completed(run_id)
                for kind in ("stored", "expected"):
                    progress.remove(run_id, run.target, kind)
                self._clear_overdue(run_id, run.target)
                touched.setdefault(run.target, set()).add(run_id)
            for target in sorted(touched):
                self._export_newest(target, touched[target])
            self._export_overdue()
            self._check_baselines()
            self.prune_if_due()

    def prune_if_due(self, now: float | None = None) -> bool:
        """Clear raw replies older than ``retention_days`` (:meth:`Store.prune`), at most once every
        PRUNE_EVERY_S (``now``: a monotonic time, for tests). A failure is logged, not raised:
        retention never stops the aggregator. Returns whether it pruned."""
        clock = time.monotonic() if now is None else now
        if self.retention_days <= 0 or (self._pruned_at is not None and clock - self._pruned_at < PRUNE_EVERY_S):
            return False
        self._pruned_at = clock
        try:
            result = self.store.prune(self.retention_days)
        except Exception:  # noqa: BLE001 - housekeeping: retried in an hour
            log.exception("pruning raw replies older than %d day(s) failed", self.retention_days)
            return False
        if result.responses or result.dead_letter_payloads:
            log.info(
                "retention: cleared %d response(s) of %d run(s) and %d dead-letter payload(s) older than %d day(s)",
                result.responses,
                len(result.runs),
                result.dead_letter_payloads,
                self.retention_days,
            )
        return True

    def _export_overdue(self) -> None:
        """Set trustwatch_run_overdue_missing of every incomplete run past its deadline (recounted
        when the run changed, else every OVERDUE_RECHECK_S)."""
        now, clock = now_ms(), time.monotonic()
        for run_id, (deadline, target) in sorted(self._deadlines.items()):
            if now <= deadline:
                continue
            last = self._overdue_checked.get(run_id)
            if last is not None and clock - last < OVERDUE_RECHECK_S:
                continue
            run = self.store.run(run_id)
            if run is None or run.completed_unix_ms is not None or self.store.is_complete(run):
                self._clear_overdue(run_id, target)
                with self._lock:
                    self._dirty.add(run_id)  # complete: the next refresh marks and exports it
                continue
            missing = self.store.missing_judgments(run)
            if last is None:
                log.warning("run %s of %s is past its deadline with %d judgment(s) missing", run_id, target, missing)
            self.metrics.run_overdue.labels(run_id, target).set(missing)
            self._overdue_checked[run_id] = clock

    def _clear_overdue(self, run_id: str, target: str) -> None:
        self._deadlines.pop(run_id, None)
        if self._overdue_checked.pop(run_id, None) is not None:
            self.metrics.run_overdue.remove(run_id, target)

    def _export_newest(self, target: str, touched: set[str]) -> None:
        newest = self.newest_complete_run(target)
        if newest is None or newest.completed_unix_ms is None:
            return
        if self._exported_run.get(target) == newest.run_id and newest.run_id not in touched:
            # an older run changed: the newer run's gauges stay as they are; but an older run that
            # completed late may now be the newest run's previous one
            if touched:
                prev = self.previous_run(newest)
                info = self._cmp_info.get((target, PREVIOUS))
                if prev is not None and (info is None or info[2] != prev.run_id):
                    report = self.report(newest.run_id)
                    if report is not None:
                        self._export_comparison(newest, report, PREVIOUS, prev)
            return
        report = self.report(newest.run_id)
        if report is None:
            return
        self.export(report)
        self.metrics.last_run.labels(target).set(newest.completed_unix_ms / 1000)
        self._exported_run[target] = newest.run_id
        self._export_comparison(newest, report, PREVIOUS, self.previous_run(newest))
        self._export_comparison(newest, report, BASELINE, self._baseline_of(newest))

    # -- comparisons ------------------------------------------------------------------------------
    def previous_run(self, run: RunRow) -> RunRow | None:
        """The complete run of ``run``'s target created last before it with the same comparable key
        (runs recorded without a key form one group), or None."""
        key = run.manifest.get("comparable_key")
        order = (run.created_unix_ms, run.run_id)
        done = [
            r
            for r in self.store.runs(run.target)
            if r.target == run.target
            and r.completed_unix_ms is not None
            and (r.created_unix_ms, r.run_id) < order
            and r.manifest.get("comparable_key") == key
        ]
        return max(done, key=lambda r: (r.created_unix_ms, r.run_id)) if done else None

    def _baseline_of(self, run: RunRow) -> RunRow | None:
        """The pinned baseline of ``run``'s target, when it is another, complete run."""
        pinned = self.store.baseline(run.target)
        self._baseline_used[run.target] = pinned.run_id if pinned else None
        if pinned is None or pinned.run_id == run.run_id:
            return None
        base = self.store.run(pinned.run_id)
        if base is None or base.completed_unix_ms is None:
            log.warning("baseline %s of %s is not a complete run: not compared", pinned.run_id, run.target)
            return None
        return base

    def _check_baselines(self) -> None:
        """Every BASELINE_RECHECK_S: compare each exported run again with its target's baseline when the
        pin changed (pinned, moved or removed in another process)."""
        clock = time.monotonic()
        if self._baselines_checked is not None and clock - self._baselines_checked < BASELINE_RECHECK_S:
            return
        self._baselines_checked = clock
        pinned = {t: b.run_id for t, b in self.store.baselines().items()}
        for target, run_id in sorted(self._exported_run.items()):
            if target in self._baseline_used and pinned.get(target) == self._baseline_used[target]:
                continue
            run, report = self.store.run(run_id), self.report(run_id)
            if run is not None and report is not None:
                self._export_comparison(run, report, BASELINE, self._baseline_of(run))

    def comparison(self, base: RunRow, new: RunRow, new_report: Report) -> dict[str, Any]:
        """The comparison of two runs as JSON (``Comparison.to_json()``): the stored one when the new
        run's values are still those it compared, else computed now and stored. Runs of different
        comparable keys are not compared (nor stored)."""
        kb, kn = base.manifest.get("comparable_key"), new.manifest.get("comparable_key")
        if kb != kn:
            reason = f"different comparable keys ({kb} vs {kn}: suite, sample, target, judges or dataset differ)"
            return Comparison(base.run_id, new.run_id, comparable=False, reason=reason).to_json()
        stored = self.store.comparison(base.run_id, new.run_id)
        if stored is not None and _same_values(stored.payload, new_report):
            return stored.payload
        base_report = self.report(base.run_id)
        if base_report is None:
            return Comparison(base.run_id, new.run_id, comparable=False, reason="base run has no report").to_json()
        started = time.perf_counter()
        payload = compare(base_report, new_report).to_json()
        took = time.perf_counter() - started
        self.compare_seconds.append(took)
        log.info(
            "compared %s with %s in %.2f s: %d metric(s), %d regressed",
            new.run_id,
            base.run_id,
            took,
            len(payload["metrics"]),
            payload["regressed"],
        )
        self.store.store_comparison(new.target, payload)
        return payload

    def current_comparisons(self, target: str) -> dict[str, dict[str, Any]]:
        """The comparisons exported for ``target``, by ``against`` (stored ones only)."""
        out: dict[str, dict[str, Any]] = {}
        for (t, against), info in sorted(self._cmp_info.copy().items()):  # copy: refresh may change it
            row = self.store.comparison(info[2], info[3]) if t == target else None
            if row is not None:
                out[against] = row.payload
        return out

    def _export_comparison(self, new: RunRow, report: Report, against: str, base: RunRow | None) -> None:
        """Export ``new``'s comparison with ``base`` under ``against``, replacing that target's previous
        series of ``against``; with no ``base``, remove them. A comparison that fails is logged and
        exports nothing (the trust gauges stay)."""
        target, m = new.target, self.metrics
        key = (target, against)
        payload: dict[str, Any] | None = None
        if base is not None:
            try:
                payload = self.comparison(base, new, report)
            except Exception:  # noqa: BLE001 - a statistics failure must not stop storing judgments
                log.exception("comparison of %s with %s (%s) failed", new.run_id, base.run_id, against)
        info = None
        exported: set[tuple[str, ...]] = set()
        if payload is not None:
            info = (target, against, payload["base_run"], payload["new_run"], str(bool(payload["comparable"])).lower())
            for mc in payload["metrics"] if payload["comparable"] else []:
                direction = "higher_is_better" if mc["higher_is_better"] else "lower_is_better"
                labels = (target, mc["task"].split("/", 1)[0], mc["task"], mc["metric"], direction, against)
                exported.add(labels)
                for verdict in VERDICTS:
                    m.comparison_verdict.labels(*labels, verdict).set(1.0 if mc["verdict"] == verdict else 0.0)
                diff = mc["paired_diff"] if mc["paired_diff"] is not None else mc["diff"]
                _set_or_remove(m.comparison_diff, labels, diff)
                both = mc["ci_low"] is not None and mc["ci_high"] is not None
                _set_or_remove(m.comparison_diff_ci, (*labels, "low"), mc["ci_low"] if both else None)
                _set_or_remove(m.comparison_diff_ci, (*labels, "high"), mc["ci_high"] if both else None)
                _set_or_remove(m.comparison_p, labels, mc["p_adjusted"])
        for gone in self._cmp_labels.get(key, set()) - exported:
            for verdict in VERDICTS:
                _remove(m.comparison_verdict, (*gone, verdict))
            _remove(m.comparison_diff, gone)
            _remove(m.comparison_diff_ci, (*gone, "low"))
            _remove(m.comparison_diff_ci, (*gone, "high"))
            _remove(m.comparison_p, gone)
        self._cmp_labels[key] = exported
        old_info = self._cmp_info.pop(key, None)
        if old_info is not None and old_info != info:
            _remove(m.comparison_info, old_info)
        if info is not None:
            m.comparison_info.labels(*info).set(1)
            self._cmp_info[key] = info

    def export(self, report: Report) -> None:
        """Set the trust gauges of ``report``'s target to this run's values; series of the target that
        this run does not have (a task or metric the previous export had) are removed."""
        m = self.metrics
        exported: set[tuple[str, ...]] = set()
        for task_name, t in report.tasks.items():
            dim = task_name.split("/", 1)[0]
            for key, metric in t.metrics.items():
                direction = "higher_is_better" if metric.higher_is_better else "lower_is_better"
                labels: tuple[str, ...] = (report.target, dim, task_name, key, direction)
                exported.add(labels)
                _set_or_remove(m.trust, labels, metric.value)
                _set_or_remove(m.trust_ref, labels, metric.reference_value)
                exact = {"exact": 1.0, "approximate": 0.0}.get(metric.reference)
                _set_or_remove(m.trust_ref_exact, labels, exact if metric.reference_value is not None else None)
                both = metric.ci_low is not None and metric.ci_high is not None
                _set_or_remove(m.trust_ci, (*labels, "low"), metric.ci_low if both else None)
                _set_or_remove(m.trust_ci, (*labels, "high"), metric.ci_high if both else None)
                m.trust_items.labels(*labels, "total").set(metric.n_total)
                m.trust_items.labels(*labels, "valid").set(metric.n_valid)
                m.trust_items.labels(*labels, "invalid").set(metric.n_invalid)
                m.trust_items.labels(*labels, "error").set(metric.n_error)
        for gone in self._exported_labels.get(report.target, set()) - exported:
            m.trust.remove(*gone)
            m.trust_ref.remove(*gone)
            _remove(m.trust_ref_exact, gone)
            for extra in ("low", "high"):
                m.trust_ci.remove(*gone, extra)
            for extra in ("total", "valid", "invalid", "error"):
                m.trust_items.remove(*gone, extra)
        self._exported_labels[report.target] = exported


def _deadline(run: RunRow) -> int:
    """When a run is overdue (unix ms; 0: never), from its manifest."""
    try:
        return int(run.manifest.get("deadline_unix_ms") or 0)
    except (TypeError, ValueError):
        return 0


def _set_or_remove(gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
    if value is None or math.isnan(value):
        _remove(gauge, labels)
    else:
        gauge.labels(*labels).set(value)


def _remove(gauge: Gauge, labels: tuple[str, ...]) -> None:
    gauge.remove(*labels)  # a series that does not exist is fine


def _same_values(payload: dict[str, Any], report: Report) -> bool:
    """Whether a stored comparison's new-run values are ``report``'s (else the run changed after it
    was compared, e.g. replayed dead letters replaced POISON results, and it is compared again)."""
    stored = {(mc["task"], mc["metric"]): mc["new"] for mc in payload.get("metrics", [])}
    now: dict[tuple[str, str], float | None] = {}
    for task, t in report.tasks.items():
        for key, metric in t.metrics.items():
            v = metric.value
            now[(task, key)] = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
    keys = set(now) | {k for k, v in stored.items() if v is not None}
    return all(stored.get(k) == now.get(k) for k in keys)


def aggregator_workers(
    bus: Bus, topics: Topics, agg: Aggregator, metrics: ServiceMetrics, linger_s: float | None = None
) -> list[Worker[Any]]:
    """The judgments loop (``linger_s``: see ``Worker``; None: TRUSTWATCH_BATCH_LINGER_S), the run
    events' and the dead letters'."""
    return [
        Worker(
            service="aggregator",
            bus=bus,
            topics=[topics.judgments],
            group_id="trustwatch-aggregator",
            decode=decode_judgment,
            handler=agg.handle_judgments,
            metrics=metrics,
            topic_names=topics,
            max_batch=2000,
            linger_s=batch_linger_s() if linger_s is None else linger_s,
        ),
        Worker(
            service="aggregator-runs",
            bus=bus,
            topics=[topics.runs],
            group_id="trustwatch-aggregator-runs",
            decode=decode_run_event,
            handler=agg.handle_run_events,
            metrics=metrics,
            topic_names=topics,
            max_batch=100,
        ),
        Worker(
            service="aggregator-dlq",
            bus=bus,
            topics=[topics.dlq],
            group_id="trustwatch-aggregator-dlq",
            decode=decode_dead_letter,
            handler=agg.handle_dead_letters,
            metrics=metrics,
            topic_names=topics,
            max_batch=100,
        ),
    ]


def serve_http(
    agg: Aggregator, registry: CollectorRegistry, host: str, port: int, token: str = ""
) -> ThreadingHTTPServer:
    """GET /metrics (Prometheus), /healthz, /readyz (database reachable), /runs, /report?run=ID,
    /compare?run=ID (the run's stored comparisons) or /compare?target=T (the target's exported ones, by
    ``against``).

    With a ``token``, /runs, /report and /compare answer only requests carrying ``Authorization: Bearer
    <token>`` (401 otherwise); /metrics and the probes stay open for Prometheus and the kubelet."""
    import hmac

    expected = f"Bearer {token}".encode() if token else b""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            if not expected:
                return True
            given = self.headers.get("Authorization", "").strip().encode("utf-8", "replace")
            return hmac.compare_digest(given, expected)

        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            url = urlsplit(self.path)
            if url.path in ("/runs", "/report", "/compare") and not self._authorized():
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer realm="trustwatch"')
                body = b'{"error":"send Authorization: Bearer <TRUSTWATCH_API_TOKEN>"}'
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if url.path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif url.path == "/healthz":
                self._send(200, b'{"status":"ok"}')
            elif url.path == "/readyz":
                try:
                    agg.store.runs()
                    self._send(200, b'{"status":"ready"}')
                except Exception as exc:  # noqa: BLE001 - any failure means not ready
                    self._send(503, json.dumps({"status": "database unreachable", "error": str(exc)}).encode())
            elif url.path == "/runs":
                listing = [
                    {
                        "run_id": r.run_id,
                        "target": r.target,
                        "expected_judgments": r.expected_judgments,
                        "completed_unix_ms": r.completed_unix_ms,
                    }
                    for r in agg.store.runs()
                ]
                self._send(200, json.dumps(listing).encode())
            elif url.path == "/report":
                run_id = (parse_qs(url.query).get("run") or [""])[0]
                report = agg.report(run_id) if run_id else None
                if report is None:
                    self._send(404, json.dumps({"error": f"no run {run_id!r}; see /runs"}).encode())
                else:
                    self._send(200, json.dumps(report.to_json(), default=str).encode())
            elif url.path == "/compare":
                query = parse_qs(url.query)
                run_id, target = (query.get("run") or [""])[0], (query.get("target") or [""])[0]
                if run_id:
                    rows = agg.store.comparisons(new_run_id=run_id)
                    self._send(200, json.dumps([r.payload for r in rows]).encode())
                elif target:
                    self._send(200, json.dumps(agg.current_comparisons(target)).encode())
                else:
                    self._send(400, b'{"error":"give ?run=ID (its stored comparisons) or ?target=T (exported ones)"}')
            else:
                self._send(
                    404, b'{"error":"not found; try /metrics /healthz /readyz /runs /report?run=ID /compare?run=ID"}'
                )

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="aggregator-http", daemon=True).start()
    return server

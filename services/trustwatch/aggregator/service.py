"""The aggregator: consumes judgments and run events, stores them, keeps Prometheus gauges of every
task metric of each target's newest complete run (restored from the database at start), and serves
reports over HTTP."""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from trustwatch.benchmark.scoring import Report, build_report
from trustwatch.platform.bus.base import Bus, Topics
from trustwatch.platform.messages import decode_judgment, decode_run_event
from trustwatch.platform.runtime import Result, Worker
from trustwatch.platform.store import RunRow, Store
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

log = logging.getLogger(__name__)


class Aggregator:
    """Stores judgments and run events and exports the trust gauges of each target's newest
    complete run (by created time): a late or redelivered judgment of an older run never replaces a
    newer run's gauges, and :meth:`start` restores the gauges from the database after a restart."""

    def __init__(self, store: Store, metrics: ServiceMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self._dirty: set[str] = set()
        self._stale_targets: set[str] = set()  # targets whose newest complete run must be (re-)exported
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        # per target: the run whose gauges are exported, and the label sets it exported
        self._exported_run: dict[str, str] = {}
        self._exported_labels: dict[str, set[tuple[str, ...]]] = {}

    # -- logic ---------------------------------------------------------------------------------
    def handle_judgments(self, batch: Sequence[pb.Judgment]) -> list[Result]:
        new = self.store.store_judgments(batch)
        self.metrics.stored.inc(new)
        self.metrics.duplicates.inc(len(batch) - new)
        with self._lock:
            self._dirty.update(j.run_id for j in batch)
        return [Result() for _ in batch]

    def handle_run_events(self, batch: Sequence[pb.RunEvent]) -> list[Result]:
        for ev in batch:
            manifest = json.loads(ev.manifest_json) if ev.manifest_json else {}
            self.store.record_run(ev.run_id, ev.target, manifest, ev.expected_jobs, ev.expected_judgments)
            with self._lock:
                self._dirty.add(ev.run_id)
        return [Result() for _ in batch]

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
        return build_report(run_id, target, rows, run.manifest if run else {}, complete)

    def newest_complete_run(self, target: str) -> RunRow | None:
        """The complete run of ``target`` created last (ties broken by run id), or None."""
        done = [r for r in self.store.runs(target) if r.target == target and r.completed_unix_ms is not None]
        return max(done, key=lambda r: (r.created_unix_ms, r.run_id)) if done else None

    def refresh(self) -> None:
        """Recompute progress of runs that got new judgments, mark those now complete, drop their
        progress series, and export each touched target's newest complete run."""
        with self._refresh_lock:
            with self._lock:
                dirty, self._dirty = self._dirty, set()
                targets, self._stale_targets = self._stale_targets, set()
            touched: dict[str, set[str]] = {t: set() for t in targets}
            for run_id in sorted(dirty):
                run = self.store.run(run_id)
                if run is None:  # judgments before their run event: nothing says when it is complete
                    continue
                stored = self.store.judgment_count(run_id)
                progress = self.metrics.run_progress
                # Complete: every expected judgment stored and settled (a transient error is retried
                # by re-running, so a run with one is not a measurement yet); see Store.is_complete.
                if run.completed_unix_ms is None and not self.store.is_complete(run):
                    progress.labels(run_id, run.target, "stored").set(stored)
                    progress.labels(run_id, run.target, "expected").set(run.expected_judgments)
                    continue
                if run.completed_unix_ms is None:
                    self.store.mark_completed(run_id)
                for kind in ("stored", "expected"):
                    progress.remove(run_id, run.target, kind)
                touched.setdefault(run.target, set()).add(run_id)
            for target in sorted(touched):
                self._export_newest(target, touched[target])

    def _export_newest(self, target: str, touched: set[str]) -> None:
        newest = self.newest_complete_run(target)
        if newest is None or newest.completed_unix_ms is None:
            return
        if self._exported_run.get(target) == newest.run_id and newest.run_id not in touched:
            return  # an older run changed: the newer run's gauges stay as they are
        report = self.report(newest.run_id)
        if report is None:
            return
        self.export(report)
        self.metrics.last_run.labels(target).set(newest.completed_unix_ms / 1000)
        self._exported_run[target] = newest.run_id

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
                both = metric.ci_low is not None and metric.ci_high is not None
                _set_or_remove(m.trust_ci, (*labels, "low"), metric.ci_low if both else None)
                _set_or_remove(m.trust_ci, (*labels, "high"), metric.ci_high if both else None)
                m.trust_items.labels(*labels, "total").set(metric.n_total)
                m.trust_items.labels(*labels, "valid").set(metric.n_valid)
                m.trust_items.labels(*labels, "error").set(metric.n_error)
        for gone in self._exported_labels.get(report.target, set()) - exported:
            m.trust.remove(*gone)
            m.trust_ref.remove(*gone)
            for extra in ("low", "high"):
                m.trust_ci.remove(*gone, extra)
            for extra in ("total", "valid", "error"):
                m.trust_items.remove(*gone, extra)
        self._exported_labels[report.target] = exported


def _set_or_remove(gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
    if value is None or math.isnan(value):
        gauge.remove(*labels)
    else:
        gauge.labels(*labels).set(value)


def aggregator_workers(bus: Bus, topics: Topics, agg: Aggregator, metrics: ServiceMetrics) -> list[Worker[Any]]:
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
    ]


def serve_http(
    agg: Aggregator, registry: CollectorRegistry, host: str, port: int, token: str = ""
) -> ThreadingHTTPServer:
    """GET /metrics (Prometheus), /healthz, /readyz (database reachable), /runs, /report?run=ID.

    With a ``token``, /runs and /report answer only requests carrying ``Authorization: Bearer
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
            if url.path in ("/runs", "/report") and not self._authorized():
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
            else:
                self._send(404, b'{"error":"not found; try /metrics /healthz /readyz /runs /report?run=ID"}')

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="aggregator-http", daemon=True).start()
    return server

"""The aggregator: consumes judgments and run events, stores them, keeps Prometheus gauges of every
task metric of each target's latest run, and serves reports over HTTP."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from trustwatch.benchmark.scoring import Report, build_report
from trustwatch.platform.bus.base import Bus, Topics
from trustwatch.platform.messages import decode_judgment, decode_run_event
from trustwatch.platform.runtime import Result, Worker
from trustwatch.platform.store import Store
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

log = logging.getLogger(__name__)


class Aggregator:
    def __init__(self, store: Store, metrics: ServiceMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self._dirty: set[str] = set()
        self._lock = threading.Lock()

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

    def report(self, run_id: str) -> Report | None:
        run = self.store.run(run_id)
        rows = self.store.judgments(run_id)
        if run is None and not rows:
            return None
        target = run.target if run else rows[0].target
        complete = run is not None and len(rows) >= run.expected_judgments
        return build_report(run_id, target, rows, run.manifest if run else {}, complete)

    def refresh(self) -> None:
        """Recompute metrics of runs that got new judgments; export those of complete runs."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        for run_id in sorted(dirty):
            run = self.store.run(run_id)
            stored = self.store.judgment_count(run_id)
            target = run.target if run else ""
            if run is not None:
                self.metrics.run_progress.labels(run_id, target, "stored").set(stored)
                self.metrics.run_progress.labels(run_id, target, "expected").set(run.expected_judgments)
            if run is None or stored < run.expected_judgments:
                continue
            if run.completed_unix_ms is None:
                self.store.mark_completed(run_id)
            report = self.report(run_id)
            if report is not None:
                self.export(report)
                self.metrics.last_run.labels(target).set(time.time())

    def export(self, report: Report) -> None:
        m = self.metrics
        for task_name, t in report.tasks.items():
            dim = task_name.split("/", 1)[0]
            for key, metric in t.metrics.items():
                labels = (report.target, dim, task_name, key)
                if metric.value is not None:
                    m.trust.labels(*labels).set(metric.value)
                if metric.reference_value is not None:
                    m.trust_ref.labels(*labels).set(metric.reference_value)
                if metric.ci_low is not None and metric.ci_high is not None:
                    m.trust_ci.labels(*labels, "low").set(metric.ci_low)
                    m.trust_ci.labels(*labels, "high").set(metric.ci_high)
                m.trust_items.labels(*labels, "total").set(metric.n_total)
                m.trust_items.labels(*labels, "valid").set(metric.n_valid)
                m.trust_items.labels(*labels, "error").set(metric.n_error)


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

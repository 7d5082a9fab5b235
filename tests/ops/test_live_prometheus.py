"""Every dashboard panel and alert rule, queried on a real Prometheus that scraped the metric objects
the services export (trustwatch.platform.telemetry.metrics.ServiceMetrics, labelled as the services label
them): each query must parse and each panel must show data."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

from tests.ops import tools
from tests.ops.promql import grafana_to_promql
from tests.ops.test_monitoring import RULES, dashboard_exprs, rule_exprs
from trustwatch.platform.telemetry.metrics import ServiceMetrics

pytestmark = pytest.mark.slow
JOBS = ("generator", "judge", "dispatcher", "aggregator")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _exercise(m: ServiceMetrics) -> None:
    """One round of what the services do, with every label value the dashboards distinguish."""
    for svc, topic_in, topic_out in (
        ("generator", "trustwatch.jobs.t1", "trustwatch.completions"),
        ("dispatcher", "trustwatch.completions", "trustwatch.judgments"),
        ("aggregator", "trustwatch.judgments", ""),
    ):
        m.consumed.labels(svc, topic_in).inc(10)
        if topic_out:
            m.produced.labels(svc, topic_out).inc(10)
        m.batch_seconds.labels(svc).observe(0.2)
        m.lag.labels(svc).set(42)
        m.dead_letters.labels(svc, "process").inc()
        m.worker_healthy.labels(svc).set(1)
        m.commit_failures.labels(svc).inc()
    for status in ("ok", "error"):
        m.completions.labels("t1", "vllm", status).inc(5)
    m.generation_seconds.labels("t1", "vllm").observe(1.5)
    m.generated_tokens.labels("t1", "vllm").inc(300)
    for outcome in ("valid", "invalid", "error"):
        m.verdicts.labels("keyword", outcome).inc(3)
    m.evaluate_seconds.labels("keyword").observe(0.05)
    m.stored.inc(10)
    m.duplicates.inc(1)


def _export_run(m: ServiceMetrics) -> None:
    labels = ("t1", "safety", "safety/misuse", "refusal_rate", "higher_is_better")
    m.trust.labels(*labels).set(0.9)
    m.trust_ref.labels(*labels).set(0.88)
    m.trust_ref_exact.labels(*labels).set(1)
    m.trust_ci.labels(*labels, "low").set(0.85)
    m.trust_ci.labels(*labels, "high").set(0.95)
    for kind, n in (("total", 100), ("valid", 96), ("invalid", 1), ("error", 3)):
        m.trust_items.labels(*labels, kind).set(n)
    m.run_progress.labels("run-1", "t1", "stored").set(150)
    m.run_progress.labels("run-1", "t1", "expected").set(200)
    m.run_overdue.labels("run-0", "t1").set(12)
    m.last_run.labels("t1").set(time.time() - 3600)
    # the newest run compared with the previous one: misuse regressed (a state set of verdicts)
    compared = (*labels, "previous")
    for verdict in ("regressed", "improved", "unchanged", "inconclusive"):
        m.comparison_verdict.labels(*compared, verdict).set(1 if verdict == "regressed" else 0)
    m.comparison_diff.labels(*compared).set(-0.2)
    m.comparison_diff_ci.labels(*compared, "low").set(-0.25)
    m.comparison_diff_ci.labels(*compared, "high").set(-0.15)
    m.comparison_p.labels(*compared).set(0.001)
    m.comparison_info.labels("t1", "previous", "run-0", "run-1", "true").set(1)


@pytest.fixture(scope="module")
def prometheus_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = tools.prometheus()
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    _export_run(metrics)
    exporter_port = _free_port()
    server, _ = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def keep_busy() -> None:
        while not stop.wait(0.5):
            _exercise(metrics)

    busy = threading.Thread(target=keep_busy, daemon=True)
    busy.start()

    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": j, "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]} for j in JOBS
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = _free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{api}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (work / "prometheus.log").read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(8)  # several scrapes, so that rate() and histogram_quantile() have data
        yield api
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        stop.set()
        server.shutdown()


def _query(api: str, expr: str) -> dict[str, Any]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def test_every_dashboard_query_returns_data(prometheus_api: str) -> None:
    empty, failed = [], []
    for dash, exprs in dashboard_exprs().items():
        for e in exprs:
            res = _query(prometheus_api, grafana_to_promql(e, rate_interval="10s"))
            if res.get("status") != "success":
                failed.append(f"{dash}: {e}: {res.get('error')}")
            elif not res["data"]["result"]:
                empty.append(f"{dash}: {e}")
    assert not failed, "\n".join(failed)
    assert not empty, "queries with no data:\n" + "\n".join(empty)


def test_every_alert_rule_evaluates(prometheus_api: str) -> None:
    for alert, e in rule_exprs().items():
        res = _query(prometheus_api, e)
        assert res.get("status") == "success", f"{alert}: {res.get('error')}"
    with urllib.request.urlopen(f"{prometheus_api}/api/v1/rules", timeout=10) as r:
        groups = json.loads(r.read())["data"]["groups"]
    health = {rule["name"]: rule["health"] for g in groups for rule in g["rules"]}
    assert set(health) == set(rule_exprs())
    assert all(h in ("ok", "unknown") for h in health.values()), health
    # The exporter's dead letters keep rising, and its comparison says regressed (scraped under four
    # jobs: four info series per target): those alerts must be firing by now.
    with urllib.request.urlopen(f"{prometheus_api}/api/v1/alerts", timeout=10) as r:
        alerts = {a["labels"]["alertname"] for a in json.loads(r.read())["data"]["alerts"]}
    assert "TrustwatchDeadLetters" in alerts
    assert "TrustwatchRegressionVsPrevious" in alerts

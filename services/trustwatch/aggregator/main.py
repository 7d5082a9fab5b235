"""Wires the aggregator: judgment, run-event and dead-letter consumers, the store, gauges and the HTTP API."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry

from trustwatch.aggregator.service import Aggregator, aggregator_workers, serve_http
from trustwatch.platform import config, wiring
from trustwatch.platform.runtime import install_signal_handlers, set_sub_batch
from trustwatch.platform.store import Store
from trustwatch.platform.telemetry.metrics import ServiceMetrics


def main(
    db: str | None = None, host: str = "0.0.0.0", metrics_port: int | None = None, bootstrap: str | None = None
) -> int:
    """Consume until SIGTERM/SIGINT; the HTTP API (metrics, reports) is on the metrics port."""
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    store = Store(db or config.env("TRUSTWATCH_DB_URL"), migrate=config.db_migrate())
    topics = wiring.topics()
    agg = Aggregator(store, metrics, topics, retention_days=config.retention_days())
    agg.start()  # gauges of every target's newest complete run, from the database; rescans incomplete runs
    port = wiring.metrics_port(metrics_port)
    http = serve_http(agg, registry, host, port, token=config.env("TRUSTWATCH_API_TOKEN")) if port else None
    workers = aggregator_workers(wiring.kafka(bootstrap), topics, agg, metrics)
    set_sub_batch(workers, config.env_int("TRUSTWATCH_AGGREGATOR_SUB_BATCH"), "TRUSTWATCH_AGGREGATOR_SUB_BATCH")
    install_signal_handlers(*workers)
    # judgments on the main thread (it refreshes progress and gauges, at most once a second); run events and
    # dead letters on their own threads
    threads = [threading.Thread(target=w.run_forever, name=w.service, daemon=True) for w in workers[1:]]
    for t in threads:
        t.start()
    workers[0].run_forever(on_idle=agg.refresh_if_due)
    for t in threads:
        t.join(10)
    if http:
        http.shutdown()
    store.close()
    return 0

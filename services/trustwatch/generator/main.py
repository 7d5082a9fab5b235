"""Wires a generator: one target's back-end behind the consumer of that target's job topic."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from trustwatch.generator.backends import backend_for
from trustwatch.generator.service import generator_worker
from trustwatch.platform import config, wiring
from trustwatch.platform.runtime import install_signal_handlers, set_sub_batch
from trustwatch.platform.targets import parse_target
from trustwatch.platform.telemetry.metrics import ServiceMetrics

log = logging.getLogger(__name__)


def main(
    target: str,
    bootstrap: str | None = None,
    metrics_port: int | None = None,
    batch: int = 0,
    max_model_len: int | None = None,
    concurrency: int | None = None,
) -> int:
    """Consume until SIGTERM/SIGINT."""
    spec = parse_target(target)
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    liveness = wiring.serve_metrics(wiring.metrics_port(metrics_port), registry)
    backend = backend_for(spec, max_model_len=max_model_len, concurrency=concurrency)
    topics = wiring.topics()
    worker = generator_worker(
        wiring.kafka(bootstrap), topics, spec.name, spec.backend, backend, metrics, max_batch=batch or None
    )
    # batch mode only: a streaming generator has no batches to split
    set_sub_batch([worker], config.env_int("TRUSTWATCH_GENERATOR_SUB_BATCH"), "TRUSTWATCH_GENERATOR_SUB_BATCH")
    liveness.watch(worker)
    install_signal_handlers(worker)
    log.info("generator for target %s (%s) consuming %s", spec.name, spec.backend, topics.jobs(spec.name))
    worker.run_forever()
    backend.close()
    return 0

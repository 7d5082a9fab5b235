"""What every service process needs at start: its topic names, the Kafka bus and its metrics endpoint,
each from its declared environment variable unless given."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, start_http_server

from trustwatch.platform import config
from trustwatch.platform.bus import Topics, kafka_bus
from trustwatch.platform.bus.base import Bus

log = logging.getLogger(__name__)


def topics() -> Topics:
    return Topics(config.env("TRUSTWATCH_TOPIC_PREFIX"))


def kafka(bootstrap: str | None = None) -> Bus:
    return kafka_bus(bootstrap or config.env("TRUSTWATCH_KAFKA_BOOTSTRAP"))


def metrics_port(port: int | None = None) -> int:
    return port if port is not None else config.env_int("TRUSTWATCH_METRICS_PORT")


def serve_metrics(port: int, registry: CollectorRegistry) -> None:
    """Serve /metrics on ``port`` (0: not at all)."""
    if port:
        start_http_server(port, registry=registry)
        log.info("Prometheus metrics on :%d/metrics", port)

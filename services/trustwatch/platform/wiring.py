"""What every service process needs at start: its topic names, the Kafka bus and its HTTP endpoint
(/metrics, and /livez fed by the transport loops' heartbeats), each from its declared environment
variable unless given."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

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


class Beating(Protocol):
    """What liveness watches: a transport loop (:class:`trustwatch.platform.runtime.Worker`)."""

    service: str

    def heartbeat_age(self) -> float: ...


class Liveness:
    """Alive while every watched loop has completed a turn within ``limit_s`` seconds."""

    def __init__(self, limit_s: float | None = None) -> None:
        self.limit_s = float(config.env_int("TRUSTWATCH_LIVENESS_S")) if limit_s is None else limit_s
        self._watched: list[Beating] = []
        self._lock = threading.Lock()
        self._reported = False

    def watch(self, *workers: Beating) -> None:
        with self._lock:
            self._watched.extend(workers)

    def check(self) -> tuple[bool, str]:
        """(alive, one line per watched loop)."""
        with self._lock:
            watched = list(self._watched)
        lines, alive = [], True
        for w in watched:
            age = w.heartbeat_age()
            stale = age > self.limit_s
            alive = alive and not stale
            lines.append(f"{w.service}: last turn {age:.0f} s ago{' (stale)' if stale else ''}")
        if not alive and not self._reported:
            log.error("liveness: a transport loop is stuck (limit %.0f s): %s", self.limit_s, "; ".join(lines))
        self._reported = not alive
        return alive, "\n".join(lines or ["no loop registered"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    liveness: Liveness


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/livez":
            alive, detail = self.server.liveness.check()
            self._send(200 if alive else 503, f"{'ok' if alive else 'stuck'}\n{detail}\n".encode())
        else:
            self._send(404, b"not found\n")

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        return None


def serve_metrics(
    port: int, registry: CollectorRegistry, liveness: Liveness | None = None, host: str = "0.0.0.0"
) -> Liveness:
    """Serve /metrics and /livez on ``port`` (0: not at all) in a daemon thread; returns the
    :class:`Liveness` that /livez answers from (register the workers with ``watch``)."""
    liveness = liveness or Liveness()
    if port:
        server = _Server((host, port), _Handler)
        server.registry, server.liveness = registry, liveness
        threading.Thread(target=server.serve_forever, name="http-metrics", daemon=True).start()
        log.info("Prometheus metrics on :%d/metrics, liveness on :%d/livez", server.server_address[1], port)
    return liveness

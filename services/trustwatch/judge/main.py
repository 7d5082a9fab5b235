"""Wires the judge: the evaluator gRPC server, and the dispatcher between the bus and evaluators."""

from __future__ import annotations

import signal
import threading

from prometheus_client import CollectorRegistry

from trustwatch.benchmark.evaluators.base import EvaluatorSettings
from trustwatch.judge.client import EvaluatorClient, GrpcEvaluators, LocalEvaluators
from trustwatch.judge.dispatcher import dispatcher_worker
from trustwatch.judge.grpc_server import ServerTLS, serve
from trustwatch.judge.offline import OfflineEvaluators
from trustwatch.platform import config, wiring
from trustwatch.platform.runtime import install_signal_handlers, set_sub_batch
from trustwatch.platform.telemetry.metrics import ServiceMetrics


def server_tls() -> ServerTLS | None:
    """The server's TLS settings from TRUSTWATCH_GRPC_TLS_CERT/_KEY/_CLIENT_CA (None: plaintext)."""
    try:
        return ServerTLS.from_files(
            config.env("TRUSTWATCH_GRPC_TLS_CERT"),
            config.env("TRUSTWATCH_GRPC_TLS_KEY"),
            config.env("TRUSTWATCH_GRPC_TLS_CLIENT_CA"),
        )
    except ValueError as e:
        raise SystemExit(str(e)) from None


def grpc_client(addr: str) -> GrpcEvaluators:
    """A client of the evaluator service, over TLS when TRUSTWATCH_GRPC_TLS_CA (or a client
    certificate) is configured."""
    try:
        return GrpcEvaluators(
            addr,
            ca_file=config.env("TRUSTWATCH_GRPC_TLS_CA"),
            cert_file=config.env("TRUSTWATCH_GRPC_TLS_CLIENT_CERT"),
            key_file=config.env("TRUSTWATCH_GRPC_TLS_CLIENT_KEY"),
        )
    except ValueError as e:
        raise SystemExit(str(e)) from None


def serve_main(
    settings: EvaluatorSettings,
    host: str | None = None,
    port: int | None = None,
    metrics_port: int | None = None,
    offline: bool = False,
) -> int:
    """Serve evaluators over gRPC until SIGTERM/SIGINT; on TRUSTWATCH_GRPC_HOST (loopback) unless
    ``host`` is given. ``offline``: the offline set (:class:`OfflineEvaluators`: evaluators that
    need an external model give counted "not judged" verdicts), as ``trustwatch run --offline``."""
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    wiring.serve_metrics(wiring.metrics_port(metrics_port), registry)
    host = host or config.env("TRUSTWATCH_GRPC_HOST")
    port = port if port is not None else config.env_int("TRUSTWATCH_GRPC_PORT")
    tls = server_tls()
    local = OfflineEvaluators(settings) if offline else LocalEvaluators(settings)
    server, bound = serve(local, host=host, port=port, metrics=metrics, tls=tls)
    mode = "plaintext" if tls is None else ("mutual TLS" if tls.client_ca_file else "TLS")
    print(f"evaluator service listening on {host}:{bound} ({mode}{', offline' if offline else ''})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(5).wait()
    return 0


def dispatch_main(
    settings: EvaluatorSettings,
    evaluator_addr: str | None = None,
    bootstrap: str | None = None,
    metrics_port: int | None = None,
) -> int:
    """Consume completions until SIGTERM/SIGINT; evaluate over gRPC, or in-process without an address."""
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    liveness = wiring.serve_metrics(wiring.metrics_port(metrics_port), registry)
    addr = evaluator_addr or config.env("TRUSTWATCH_EVALUATOR_ADDR")
    client: EvaluatorClient = grpc_client(addr) if addr else LocalEvaluators(settings)
    worker = dispatcher_worker(
        wiring.kafka(bootstrap),
        wiring.topics(),
        client,
        metrics,
        outage_after=config.env_int("TRUSTWATCH_DISPATCHER_OUTAGE_AFTER"),
    )
    set_sub_batch(
        [worker],
        config.env_int("TRUSTWATCH_DISPATCHER_SUB_BATCH"),
        "TRUSTWATCH_DISPATCHER_SUB_BATCH",
        seconds=config.env_float("TRUSTWATCH_DISPATCHER_SUB_BATCH_S", zero_ok=True),
    )
    liveness.watch(worker)
    install_signal_handlers(worker)
    worker.run_forever()
    client.close()
    return 0

"""The evaluator gRPC server: thin transport over :class:`LocalEvaluators`, with standard health
checking (grpc.health.v1) and server reflection."""

from __future__ import annotations

import logging
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from trustwatch.benchmark import evaluators
from trustwatch.judge.client import LocalEvaluators, item_from_pb, verdict_to_pb
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import evaluator_pb2 as epb
from trustwatch.v1 import evaluator_pb2_grpc as egrpc

log = logging.getLogger(__name__)
SERVICE_NAME = epb.DESCRIPTOR.services_by_name["EvaluatorService"].full_name


class EvaluatorServicer(egrpc.EvaluatorServiceServicer):
    def __init__(self, local: LocalEvaluators, metrics: ServiceMetrics | None = None) -> None:
        self.local = local
        self.metrics = metrics

    def Evaluate(self, request: epb.EvaluateRequest, context: grpc.ServicerContext) -> epb.EvaluateResponse:  # noqa: N802 - gRPC name
        if request.evaluator not in evaluators.known():
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown evaluator {request.evaluator!r}; known: {', '.join(evaluators.known())}",
            )
        items = [item_from_pb(i) for i in request.items]
        started = time.perf_counter()
        verdicts = self.local.evaluate(request.evaluator, items)
        if self.metrics is not None:
            self.metrics.evaluate_seconds.labels(request.evaluator).observe(time.perf_counter() - started)
            for v in verdicts:
                outcome = "error" if v.error else ("valid" if v.valid else "invalid")
                self.metrics.verdicts.labels(request.evaluator, outcome).inc()
        return epb.EvaluateResponse(verdicts=[verdict_to_pb(i.job_id, v) for i, v in zip(items, verdicts)])

    def ListEvaluators(  # noqa: N802 - the gRPC method's name, fixed by the proto
        self, request: epb.ListEvaluatorsRequest, context: grpc.ServicerContext
    ) -> epb.ListEvaluatorsResponse:
        return epb.ListEvaluatorsResponse(
            evaluators=[
                epb.EvaluatorInfo(name=n, description=c.description, offline=c.offline)
                for n, c in evaluators.known().items()
            ]
        )


@dataclass(frozen=True)
class ServerTLS:
    """TLS for the evaluator server: PEM files of its certificate chain and key; with
    ``client_ca_file``, mutual TLS (every client must present a certificate that CA signed)."""

    cert_file: str
    key_file: str
    client_ca_file: str = ""

    @classmethod
    def from_files(cls, cert_file: str, key_file: str, client_ca_file: str = "") -> ServerTLS | None:
        """None when no certificate is configured (plaintext); a clear error for half a configuration."""
        if not (cert_file or key_file or client_ca_file):
            return None
        if not (cert_file and key_file):
            raise ValueError(
                "gRPC TLS needs both TRUSTWATCH_GRPC_TLS_CERT and TRUSTWATCH_GRPC_TLS_KEY "
                "(TRUSTWATCH_GRPC_TLS_CLIENT_CA alone cannot serve TLS)"
            )
        return cls(cert_file, key_file, client_ca_file)

    def credentials(self) -> grpc.ServerCredentials:
        chain, key = Path(self.cert_file).read_bytes(), Path(self.key_file).read_bytes()
        client_ca = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
        )


def serve(
    local: LocalEvaluators,
    host: str = "127.0.0.1",
    port: int = 50051,
    workers: int = 8,
    metrics: ServiceMetrics | None = None,
    tls: ServerTLS | None = None,
) -> tuple[grpc.Server, int]:
    """Start the server; returns it and the bound port (pass port 0 for a free one). Loopback by
    default; TLS with ``tls`` (mutual TLS when it names a client CA), plaintext without."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
    )
    egrpc.add_EvaluatorServiceServicer_to_server(  # type: ignore[no-untyped-call]  # generated, untyped
        EvaluatorServicer(local, metrics), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if tls is not None:
        bound = server.add_secure_port(f"{host}:{port}", tls.credentials())
    else:
        bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}; is the port in use?")
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    mode = "plaintext" if tls is None else ("mutual TLS" if tls.client_ca_file else "TLS")
    log.info("evaluator service listening on %s:%d (%s)", host, bound, mode)
    return server, bound

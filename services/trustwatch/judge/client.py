"""Ways to reach evaluators: in-process (embedded mode) or over gRPC (distributed mode)."""

from __future__ import annotations

import abc
import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc

from trustwatch.benchmark import evaluators
from trustwatch.benchmark.evaluators.base import EvalItem, Evaluator, EvaluatorSettings, Verdict
from trustwatch.platform.messages import dumps_record
from trustwatch.v1 import evaluator_pb2 as epb
from trustwatch.v1 import evaluator_pb2_grpc as egrpc


class EvaluatorClient(abc.ABC):
    @abc.abstractmethod
    def evaluate(self, evaluator: str, items: Sequence[EvalItem]) -> list[Verdict]:
        """One verdict per item. Unknown evaluators give error verdicts; transport faults raise."""

    def close(self) -> None:
        return None


class LocalEvaluators(EvaluatorClient):
    """Evaluators created on first use and kept for the process's life."""

    def __init__(self, settings: EvaluatorSettings | None = None) -> None:
        self.settings = settings or EvaluatorSettings()
        self._cache: dict[str, Evaluator] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Evaluator:
        with self._lock:
            if name not in self._cache:
                self._cache[name] = evaluators.create(name, self.settings)
            return self._cache[name]

    def evaluate(self, evaluator: str, items: Sequence[EvalItem]) -> list[Verdict]:
        try:
            ev = self.get(evaluator)
        except Exception as exc:  # noqa: BLE001 - unknown evaluator or a back-end that cannot load
            return [Verdict.failed(f"evaluator {evaluator!r} unavailable: {exc}")] * len(items)
        return evaluators.evaluate_items(ev, items)


def item_to_pb(it: EvalItem) -> epb.EvalItem:
    return epb.EvalItem(
        job_id=it.job_id,
        task=it.task,
        prompt=it.prompt,
        response=it.response,
        record_json=it.record_json or dumps_record(it.record),
        generation_error=it.generation_error,
    )


def item_from_pb(p: epb.EvalItem) -> EvalItem:
    return EvalItem(
        job_id=p.job_id,
        task=p.task,
        prompt=p.prompt,
        response=p.response,
        record=json.loads(p.record_json) if p.record_json else {},
        generation_error=p.generation_error,
        record_json=p.record_json,
    )


def verdict_to_pb(job_id: str, v: Verdict) -> epb.Verdict:
    return epb.Verdict(
        job_id=job_id,
        label=v.label,
        valid=v.valid,
        score=v.score,
        error=v.error,
        detail_json=v.detail_as_json(),
    )


def verdict_from_pb(p: epb.Verdict) -> Verdict:
    return Verdict(
        label=p.label,
        valid=p.valid,
        score=p.score if not math.isnan(p.score) else math.nan,
        error=p.error,
        detail=json.loads(p.detail_json) if p.detail_json else {},
        detail_json=p.detail_json,
    )


class GrpcEvaluators(EvaluatorClient):
    """Client of the evaluator service. Raises grpc.RpcError on transport faults (the dispatcher then
    leaves its batch uncommitted and retries), returns error verdicts for unknown evaluators."""

    def __init__(
        self,
        address: str,
        timeout_s: float = 300.0,
        max_message_mb: int = 64,
        *,
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
    ) -> None:
        """``ca_file`` (PEM): connect over TLS and verify the server against it; ``cert_file`` and
        ``key_file``: the client certificate for mutual TLS. With none of them, plaintext."""
        opts = [
            ("grpc.max_send_message_length", max_message_mb << 20),
            ("grpc.max_receive_message_length", max_message_mb << 20),
        ]
        self.address = address
        if bool(cert_file) != bool(key_file):
            raise ValueError(
                "a gRPC client certificate needs both TRUSTWATCH_GRPC_TLS_CLIENT_CERT and "
                "TRUSTWATCH_GRPC_TLS_CLIENT_KEY"
            )
        self.tls = bool(ca_file or cert_file)
        if self.tls:
            creds = grpc.ssl_channel_credentials(
                root_certificates=Path(ca_file).read_bytes() if ca_file else None,
                private_key=Path(key_file).read_bytes() if key_file else None,
                certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
            )
            self.channel = grpc.secure_channel(address, creds, options=opts)
        else:
            self.channel = grpc.insecure_channel(address, options=opts)
        self.stub = egrpc.EvaluatorServiceStub(self.channel)  # type: ignore[no-untyped-call]  # generated, untyped
        self.timeout_s = timeout_s

    def evaluate(self, evaluator: str, items: Sequence[EvalItem]) -> list[Verdict]:
        req = epb.EvaluateRequest(evaluator=evaluator, items=[item_to_pb(i) for i in items])
        try:
            resp = self.stub.Evaluate(req, timeout=self.timeout_s, wait_for_ready=True)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return [Verdict.failed(f"evaluator {evaluator!r}: {exc.details()}")] * len(items)
            raise
        if len(resp.verdicts) != len(items):
            raise RuntimeError(f"evaluator service returned {len(resp.verdicts)} verdicts for {len(items)} items")
        return [verdict_from_pb(v) for v in resp.verdicts]

    def list(self) -> list[epb.EvaluatorInfo]:
        return list(self.stub.ListEvaluators(epb.ListEvaluatorsRequest(), timeout=30).evaluators)

    def close(self) -> None:
        self.channel.close()

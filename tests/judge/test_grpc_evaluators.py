"""The evaluator service over a real gRPC server on loopback."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from trustwatch.benchmark.evaluators.base import EvalItem
from trustwatch.judge.client import GrpcEvaluators, LocalEvaluators
from trustwatch.judge.grpc_server import SERVICE_NAME, serve
from trustwatch.platform.telemetry.metrics import ServiceMetrics


@pytest.fixture(scope="module")
def server():
    registry = CollectorRegistry()
    srv, port = serve(LocalEvaluators(), host="127.0.0.1", port=0, metrics=ServiceMetrics(registry))
    yield f"127.0.0.1:{port}", registry
    srv.stop(0)


def test_evaluate_in_order_with_errors_kept(server):
    addr, registry = server
    client = GrpcEvaluators(addr, timeout_s=10)
    items = [
        EvalItem("j1", "truthfulness/external", "p", "Answer: Refutes."),
        EvalItem("j2", "truthfulness/external", "p", "no idea"),
        EvalItem("j3", "truthfulness/external", "p", "", generation_error="timeout"),
        EvalItem("j4", "truthfulness/external", "p", "It supports it", record={"nan": float("nan")}),
    ]
    v = client.evaluate("fact_check", items)
    assert [x.label for x in v] == ["REFUTE", "invalid", "error", "SUPPORT"]
    assert [x.valid for x in v] == [True, False, False, True]
    assert "generation failed: timeout" in v[2].error
    assert v[1].detail == {"reason": "neither"}
    assert (
        registry.get_sample_value("trustwatch_verdicts_total", {"evaluator": "fact_check", "outcome": "invalid"}) == 1
    )
    client.close()


def test_unknown_evaluator_gives_error_verdicts(server):
    client = GrpcEvaluators(server[0], timeout_s=10)
    (v,) = client.evaluate("no_such_judge", [EvalItem("j", "t", "p", "r")])
    assert v.error and "unknown evaluator 'no_such_judge'" in v.error and "fact_check" in v.error


def test_list_health_and_reflection(server):
    addr = server[0]
    client = GrpcEvaluators(addr, timeout_s=10)
    names = {e.name for e in client.list()}
    assert {"fact_check", "refusal"} <= names
    with grpc.insecure_channel(addr) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", SERVICE_NAME):
            resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        (resp,) = list(
            refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        )
        listed = {s.name for s in resp.list_services_response.service}
        assert {"trustwatch.v1.EvaluatorService", "grpc.health.v1.Health"} <= listed


def test_unreachable_evaluator_service_raises_so_the_batch_is_retried():
    client = GrpcEvaluators("127.0.0.1:1", timeout_s=1)
    with pytest.raises(grpc.RpcError):
        client.evaluate("fact_check", [EvalItem("j", "t", "p", "r")])

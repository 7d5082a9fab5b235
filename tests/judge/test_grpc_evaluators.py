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
    assert v[2].error == "timeout"  # the generation's error: not judged
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


def test_the_record_and_the_verdict_detail_cross_the_wire_as_the_text_they_came_in(server, monkeypatch):
    """The completion's record JSON is sent as it is (not decoded and encoded again by the client), and
    the judgment carries the detail text the judge sent."""
    import json

    from trustwatch.judge import client as client_module
    from trustwatch.judge.dispatcher import eval_item, judgment
    from trustwatch.v1 import messages_pb2 as pb

    addr, _ = server
    record_json = '{ "label" : "SUPPORT" }'  # not as dumps_record would write it
    completion = pb.Completion(
        ref=pb.JobRef(job_id="r/truthfulness/external/0/0", run_id="r", task="truthfulness/external"),
        text="no idea",
        record_json=record_json,
    )
    sent: list[str] = []
    real = client_module.item_to_pb
    monkeypatch.setattr(client_module, "item_to_pb", lambda it: sent.append(real(it).record_json) or real(it))
    grpc_client = GrpcEvaluators(addr, timeout_s=10)
    try:
        (verdict,) = grpc_client.evaluate("fact_check", [eval_item(completion)])
    finally:
        grpc_client.close()
    assert sent == [record_json]
    assert verdict.detail == {"reason": "neither"} and json.loads(verdict.detail_json) == {"reason": "neither"}
    assert judgment(completion, "fact_check", verdict).detail_json == verdict.detail_json
    # a verdict made in-process has no text yet: encoded once, when the judgment is made
    local = LocalEvaluators().evaluate("fact_check", [eval_item(completion)])[0]
    assert local.detail_json == "" and json.loads(judgment(completion, "fact_check", local).detail_json) == local.detail

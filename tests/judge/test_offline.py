"""The offline evaluator set, and `trustwatch judge serve --offline` serving it."""

from __future__ import annotations

from typing import Any

import pytest

from trustwatch.benchmark.evaluators.base import EvalItem, EvaluatorSettings
from trustwatch.cli import main
from trustwatch.judge import main as judge_main
from trustwatch.judge.client import LocalEvaluators
from trustwatch.judge.offline import OFFLINE_SKIP, OfflineEvaluators


def _item(response: str) -> EvalItem:
    return EvalItem(job_id="r/t/0/0", task="t", prompt="p", response=response, record={})


def test_a_judge_that_needs_an_external_model_reports_not_judged() -> None:
    [v] = OfflineEvaluators(EvaluatorSettings()).evaluate("llm_judge.squad", [_item("Paris")])
    assert v.error == OFFLINE_SKIP and not v.valid


def test_an_offline_judge_runs_for_real() -> None:
    offline = OfflineEvaluators(EvaluatorSettings())
    verdicts = offline.evaluate("refusal", [_item("I'm sorry, I cannot help with that."), _item("Sure: step one.")])
    assert [v.error for v in verdicts] == ["", ""]
    assert verdicts == LocalEvaluators(EvaluatorSettings()).evaluate(
        "refusal", [_item("I'm sorry, I cannot help with that."), _item("Sure: step one.")]
    )


class _Served(Exception):
    pass


@pytest.mark.parametrize("flags, expected", [(["--offline"], OfflineEvaluators), ([], LocalEvaluators)])
def test_judge_serve_offline_serves_the_offline_set(
    monkeypatch: pytest.MonkeyPatch, flags: list[str], expected: type
) -> None:
    served: list[Any] = []

    def fake_serve(local: Any, **kwargs: Any) -> Any:
        served.append(local)
        raise _Served  # stop before the server would wait for SIGTERM

    monkeypatch.setattr(judge_main, "serve", fake_serve)
    monkeypatch.setattr(judge_main.wiring, "serve_metrics", lambda port, registry: None)
    with pytest.raises(_Served):
        main(["judge", "serve", "--port", "0", *flags])
    assert type(served[0]) is expected

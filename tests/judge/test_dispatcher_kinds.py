"""Issue 8: a judgment carries its error's kind (error_kind) and the generation error as fields;
scoring reads the fields, and the "generation failed: " prefix only for rows from before them."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import pytest

from trustwatch.benchmark.evaluators.base import EvalItem, Verdict
from trustwatch.benchmark.scoring import generation_error, scored_items
from trustwatch.judge.client import EvaluatorClient, LocalEvaluators
from trustwatch.judge.dispatcher import judge_batch, judge_error_kind
from trustwatch.v1 import messages_pb2 as pb

TRANSIENT, FINAL, NONE = pb.ERROR_KIND_TRANSIENT, pb.ERROR_KIND_FINAL, pb.ERROR_KIND_UNSPECIFIED


def _completion(i: int, text: str = "Answer: Supports.", error: str = "", kind: int = NONE) -> pb.Completion:
    return pb.Completion(
        ref=pb.JobRef(
            job_id=f"r/truthfulness/external/{i}/0",
            run_id="r",
            task="truthfulness/external",
            item_id=str(i),
            target="m",
        ),
        prompt="p",
        text=text,
        error=error,
        error_kind=kind,
        record_json='{"label": "SUPPORT"}',
    )


def _judgments(client: EvaluatorClient, completions: Sequence[pb.Completion]) -> list[pb.Judgment]:
    return [pb.Judgment.FromString(o.value) for r in judge_batch(client, completions) for o in r.outputs]


def test_generation_failures_carry_the_completions_kind_and_error() -> None:
    js = _judgments(
        LocalEvaluators(),
        [
            _completion(0),
            _completion(1, text="", error="gave up after 6 attempts: HTTP 503 from x", kind=TRANSIENT),
            _completion(2, text="", error="HTTP 400 from x: prompt too long", kind=FINAL),
            _completion(3, text="", error="timeout"),  # a completion from before kinds existed
        ],
    )
    by = {j.ref.item_id: j for j in js}
    assert by["0"].error == "" and by["0"].error_kind == NONE and by["0"].generation_error == ""
    assert by["1"].error_kind == TRANSIENT and by["1"].generation_error == "gave up after 6 attempts: HTTP 503 from x"
    assert by["1"].error == "gave up after 6 attempts: HTTP 503 from x"  # the generation's error, no prefix
    assert by["2"].error_kind == FINAL
    assert by["3"].error_kind == FINAL and by["3"].generation_error == "timeout"


class _Judge(EvaluatorClient):
    def __init__(self, error: str) -> None:
        self.error = error

    def evaluate(self, evaluator: str, items: Sequence[EvalItem]) -> list[Verdict]:
        return [Verdict.failed(self.error) for _ in items]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("judge endpoint http://j/v1: unreachable (ConnectionRefusedError) after 5 attempts", TRANSIENT),
        ("judge endpoint http://j/v1: timed out after 60 s (5 attempts)", TRANSIENT),
        ("judge endpoint http://j/v1: HTTP 503 after 5 attempts: overloaded", TRANSIENT),
        ("judge endpoint http://j/v1: HTTP 429 after 5 attempts: slow down", TRANSIENT),
        ("embedding endpoint http://e/v1: unreachable (x) after 5 attempts", TRANSIENT),
        ("evaluator fact_check failed: RuntimeError: CUDA out of memory", TRANSIENT),
        ("evaluator 'llm_judge.x' unavailable: cannot load", TRANSIENT),
        ("judge endpoint http://j/v1: HTTP 400 after 1 attempt: bad request", FINAL),
        ("judge prompt misuse: record has no 'prompt'", FINAL),
        ("evaluator 'nope': unknown evaluator", FINAL),
    ],
)
def test_judge_failures_are_transient_where_the_text_tells_a_transport_fault(error: str, kind: int) -> None:
    assert judge_error_kind(error) == kind
    [j] = _judgments(_Judge(error), [_completion(0)])
    assert j.error == error and j.error_kind == kind and j.generation_error == ""


def test_scoring_uses_the_fields_and_the_prefix_only_for_old_rows() -> None:
    js = _judgments(
        LocalEvaluators(),
        [
            _completion(0),
            _completion(1, text="", error="gave up: HTTP 503", kind=TRANSIENT),
        ],
    )
    # A judge error whose text happens to start like a generation failure is not one, once kinds exist.
    odd = pb.Judgment(
        ref=pb.JobRef(job_id="r/truthfulness/external/2/0", run_id="r", task="truthfulness/external", item_id="2"),
        evaluator="fact_check",
        label="error",
        error="generation failed: lookalike",
        error_kind=TRANSIENT,
        record_json="{}",
    )
    # A stored row from before the columns existed: kind and generation_error are NULL.
    legacy = SimpleNamespace(
        job_id="r/truthfulness/external/3/0",
        task="truthfulness/external",
        item_id="3",
        evaluator="fact_check",
        label="error",
        valid=False,
        score=None,
        error="generation failed: timeout",
        detail_json="",
        response="",
        record_json="{}",
        error_kind=None,
        generation_error=None,
    )
    items = scored_items([*js, odd, legacy])["truthfulness/external"]
    assert [i.generation_error for i in items] == ["", "gave up: HTTP 503", "", "timeout"]
    assert generation_error(odd) == "" and generation_error(legacy) == "timeout"

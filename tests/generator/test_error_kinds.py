"""Issue 8: every generation error says whose it is (error_kind on the Completion), and a reply is
never bigger than a message may be (cut to TRUSTWATCH_MAX_REPLY_CHARS, original length kept)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from trustwatch.generator.backends._kinds import ClassifiedResult, error_kind_of
from trustwatch.generator.backends.base import Backend, GenRequest, GenResult
from trustwatch.generator.backends.vllm_engine import VllmBackend, _EngineThread
from trustwatch.generator.core import cut_reply, generate, to_completion
from trustwatch.generator.service import generator_worker
from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb

TRANSIENT, FINAL, NONE = pb.ERROR_KIND_TRANSIENT, pb.ERROR_KIND_FINAL, pb.ERROR_KIND_UNSPECIFIED


def _job(i: int, prompt: str = "p") -> pb.PromptJob:
    return pb.PromptJob(
        ref=pb.JobRef(job_id=f"r/t/{i}/0", run_id="r", task="t", item_id=str(i)),
        prompt=prompt,
        target=pb.Target(name="m"),
        record_json="{}",
    )


class _Replies(Backend):
    def __init__(self, *results: Any) -> None:
        self.results = results

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        return [r(q.request_id) for r, q in zip(self.results, requests, strict=True)]


class _Crashes(Backend):
    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        raise RuntimeError("CUDA error: device lost")


# -- error kinds -----------------------------------------------------------------------------------


def test_completion_carries_the_back_ends_kind_and_keeps_the_text() -> None:
    backend = _Replies(
        lambda rid: GenResult(rid, text="fine"),
        lambda rid: ClassifiedResult(rid, error="HTTP 400 from x: content filter", error_kind=FINAL),
        lambda rid: ClassifiedResult(rid, error="gave up after 6 attempts: HTTP 503", error_kind=TRANSIENT),
        lambda rid: GenResult(rid, error="a back-end that does not classify"),
    )
    c = generate(backend, [_job(i) for i in range(4)])
    assert [x.error_kind for x in c] == [NONE, FINAL, TRANSIENT, TRANSIENT]
    assert c[1].error == "HTTP 400 from x: content filter" and c[1].text == ""
    assert c[0].text == "fine" and not c[0].error


def test_a_back_end_crash_is_transient_for_every_job() -> None:
    c = generate(_Crashes(), [_job(0), _job(1)])
    assert all(x.error.startswith("back-end failed: RuntimeError") for x in c)
    assert [x.error_kind for x in c] == [TRANSIENT, TRANSIENT]


def test_error_kind_of() -> None:
    assert error_kind_of(GenResult("a", text="x")) == NONE
    assert error_kind_of(GenResult("a", error="e")) == TRANSIENT  # unclassified: retry rather than lose
    assert error_kind_of(ClassifiedResult("a", error="e", error_kind=FINAL)) == FINAL
    assert error_kind_of(ClassifiedResult("a", text="x", error_kind=FINAL)) == NONE  # no error, no kind


class _Tokenizer:
    def __call__(self, texts: Any, add_special_tokens: bool = True) -> dict[str, Any]:
        if isinstance(texts, str):
            return {"input_ids": list(range(len(texts.split())))}
        return {"input_ids": [list(range(len(t.split()))) for t in texts]}


class _SamplingParams:
    def __init__(self, temperature: float, top_p: float, max_tokens: int, seed: int | None) -> None:
        if temperature < 0:
            raise ValueError("temperature must be non-negative")


class _Out:
    def __init__(self, text: str, n: int) -> None:
        self.outputs = [type("C", (), {"text": text, "finish_reason": "stop", "token_ids": [1, 2]})()]
        self.prompt_token_ids = list(range(n))
        self.metrics = None


class _Llm:
    def generate(self, prompts: list[dict[str, Any]], params: Any, use_tqdm: bool = False) -> list[_Out]:
        if any(len(p["prompt_token_ids"]) == 3 for p in prompts):  # a three-word prompt crashes the engine
            raise RuntimeError("engine died")
        return [_Out("ok", len(p["prompt_token_ids"])) for p in prompts]


def _stub_vllm(window: int = 10) -> VllmBackend:
    """A VllmBackend around a fake engine and tokenizer (one token per word): the classification
    logic without loading a model."""
    b = VllmBackend.__new__(VllmBackend)
    b._has_template = False
    b._tokenizer = _Tokenizer()
    b._sampling_params_cls = _SamplingParams
    b._llm = _Llm()
    b.max_model_len = window
    b._stream = None
    b._engine_thread = _EngineThread("stub-engine")
    return b


def test_vllm_prompt_too_long_and_bad_settings_are_final_an_engine_failure_transient() -> None:
    out = _stub_vllm(window=10).generate(
        [
            GenRequest("ok", "one two", 0.0, 4),
            GenRequest("long", "w " * 12, 0.0, 4),
            GenRequest("bad", "one two", -1.0, 4),
            GenRequest("crash", "a b c", 0.0, 4),
        ]
    )
    by = {r.request_id: r for r in out}
    assert not by["ok"].error and error_kind_of(by["ok"]) == NONE
    assert by["long"].error.startswith("prompt has 12 tokens, model window is 10")
    assert error_kind_of(by["long"]) == FINAL
    assert error_kind_of(by["bad"]) == FINAL
    assert by["crash"].error == "vLLM failed: engine died" and error_kind_of(by["crash"]) == TRANSIENT


# -- reply size ------------------------------------------------------------------------------------


def test_cut_reply() -> None:
    assert cut_reply("abcdef", 4) == ("abcd", 6)
    assert cut_reply("abcd", 4) == ("abcd", 0)
    assert cut_reply("abcdef", 0) == ("abcdef", 0) and cut_reply("abcdef", None) == ("abcdef", 0)


def test_over_long_reply_is_cut_with_its_original_length() -> None:
    long = "é" * 5000
    c = to_completion(_job(0), GenResult("r/t/0/0", text=long), max_reply_chars=1000)
    assert c.text == "é" * 1000 and c.original_chars == 5000
    short = to_completion(_job(0), GenResult("r/t/0/0", text="hi"), max_reply_chars=1000)
    assert short.text == "hi" and short.original_chars == 0


def _run_generator(backend: Backend, **kw: Any) -> list[pb.Completion]:
    bus, topics = MemoryBus(), Topics("tw")
    p = bus.producer()
    p.produce(topics.jobs("m"), _job(0).SerializeToString(), b"r/t/0/0")
    p.flush()
    worker = generator_worker(bus, topics, "m", "fake", backend, ServiceMetrics(CollectorRegistry()), **kw)
    assert worker.run_once(timeout=0.1) == 1
    return [pb.Completion.FromString(m.value) for m in bus.messages(topics.completions)]


def test_generator_service_produces_cut_replies(monkeypatch: pytest.MonkeyPatch) -> None:
    two_mb = "x" * (2 << 20)
    backend = _Replies(lambda rid: GenResult(rid, text=two_mb))
    [c] = _run_generator(backend, max_reply_chars=50)
    assert c.text == "x" * 50 and c.original_chars == 2 << 20
    # Unset: the declared variable decides (default 100,000 characters).
    monkeypatch.delenv("TRUSTWATCH_MAX_REPLY_CHARS", raising=False)
    [c] = _run_generator(backend)
    assert len(c.text) == 100_000 and c.original_chars == 2 << 20
    monkeypatch.setenv("TRUSTWATCH_MAX_REPLY_CHARS", "7")
    [c] = _run_generator(backend)
    assert c.text == "x" * 7

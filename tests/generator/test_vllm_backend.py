"""The vllm back-end against the real vLLM engine (CPU build here), in-process."""

from __future__ import annotations

import re
from typing import Any

import pytest

from trustwatch.generator.backends._kinds import error_kind_of
from trustwatch.generator.backends.base import GenRequest, GenResult
from trustwatch.v1 import messages_pb2 as pb

pytestmark = pytest.mark.slow


def _mixed(n: int = 12, max_tokens: int = 16) -> list[GenRequest]:
    temps = [0.0, 0.7, 1.0]
    return [
        GenRequest(
            f"r{i}",
            f"Question {i}: is it true that water boils?",
            temperature=temps[i % 3],
            max_tokens=max_tokens,
            top_p=0.9 if i % 2 else 1.0,
            seed=100 + i,
        )
        for i in range(n)
    ]


def _ok(r: GenResult) -> bool:
    return not r.error and r.completion_tokens > 0 and r.finish_reason in ("stop", "length")


def test_batch_with_mixed_temperatures_goes_to_vllm_in_one_call(
    vllm_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = vllm_engine._llm.generate

    def spy(prompts: Any, params: Any, **kw: Any) -> Any:
        calls.append(len(prompts))
        # One SamplingParams per request, carrying that request's settings.
        assert [p.temperature for p in params] == [r.temperature for r in reqs]
        assert [p.seed for p in params] == [r.seed for r in reqs]
        return real(prompts, params, **kw)

    monkeypatch.setattr(vllm_engine._llm, "generate", spy)
    reqs = _mixed()
    out = vllm_engine.generate(reqs)
    assert calls == [len(reqs)]  # the whole batch in one call: continuous batching
    assert [r.request_id for r in out] == [r.request_id for r in reqs]
    assert all(_ok(r) for r in out), out
    assert all(r.completion_tokens <= 16 and r.prompt_tokens > 5 for r in out)
    assert all(r.latency_s > 0 for r in out)
    assert vllm_engine.preferred_batch >= 256


def test_fixed_seeds_are_reproducible(vllm_engine: Any) -> None:
    reqs = _mixed()
    first = [r.text for r in vllm_engine.generate(reqs)]
    # Same requests again, in another order and batch: a seeded request's text does not change.
    second = {r.request_id: r.text for r in vllm_engine.generate(list(reversed(reqs)))}
    assert first == [second[r.request_id] for r in reqs]
    # Another seed at temperature 1 gives another sample (16 tokens from 512: equal only by fluke).
    hot = GenRequest("hot", "Tell me a story.", temperature=1.0, max_tokens=16, seed=1)
    texts = {vllm_engine.generate([GenRequest("hot", hot.prompt, 1.0, 16, seed=s)])[0].text for s in (1, 2, 3)}
    assert len(texts) > 1


def test_oversized_prompt_becomes_an_error_and_the_others_are_generated(vllm_engine: Any) -> None:
    reqs = _mixed(6)
    reqs.insert(2, GenRequest("too-long", "word " * 800, temperature=0.0, max_tokens=8))
    reqs.append(GenRequest("bad-temp", "hi", temperature=-1.0, max_tokens=8))
    out = vllm_engine.generate(reqs)
    assert [r.request_id for r in out] == [r.request_id for r in reqs]
    by_id = {r.request_id: r for r in out}
    err = by_id["too-long"].error
    assert re.match(r"prompt has \d+ tokens, model window is 512; ", err), err
    assert by_id["too-long"].text == "" and by_id["too-long"].prompt_tokens > 512
    # Final: the prompt belongs to the model's window, a retry cannot help (issue 8).
    assert error_kind_of(by_id["too-long"]) == pb.ERROR_KIND_FINAL
    assert "temperature" in by_id["bad-temp"].error
    assert all(_ok(r) for r in out if r.request_id not in ("too-long", "bad-temp"))


def test_max_tokens_is_clamped_to_the_window(vllm_engine: Any) -> None:
    # A prompt a few tokens short of the window, asking for far more than fits.
    words = 1
    while len(vllm_engine.encode(["hello " * (words + 1)])[0]) < 505:
        words += 1
    prompt = "hello " * words
    n = len(vllm_engine.encode([prompt])[0])
    assert n < 512
    [r] = vllm_engine.generate([GenRequest("edge", prompt, temperature=1.0, max_tokens=200, seed=0)])
    assert not r.error, r.error
    assert r.prompt_tokens == n and r.prompt_tokens + r.completion_tokens <= 512


def test_empty_batch(vllm_engine: Any) -> None:
    assert vllm_engine.generate([]) == []

"""The vllm back-end's stream against the real vLLM engine (CPU build here), in-process: requests
go in one at a time, results come back as each sequence finishes."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from trustwatch.generator.backends._kinds import error_kind_of
from trustwatch.generator.backends.base import GenRequest, GenResult
from trustwatch.v1 import messages_pb2 as pb

pytestmark = pytest.mark.slow


def _collect(stream: Any, n: int, limit_s: float = 300.0) -> list[GenResult]:
    got: list[GenResult] = []
    deadline = time.monotonic() + limit_s
    while len(got) < n and time.monotonic() < deadline:
        got += stream.results(timeout=1.0)
    return got


def test_results_come_back_in_finishing_order_none_lost(vllm_engine: Any) -> None:
    # Alternate very short and long replies (greedy); the short ones must not wait for the long ones.
    reqs = [
        GenRequest(f"r{i}", f"Question {i}: tell me about rivers.", temperature=0.0, max_tokens=2 if i % 2 else 48)
        for i in range(12)
    ]
    stream = vllm_engine.stream()
    try:
        assert stream.capacity >= 2
        for r in reqs:
            stream.submit(r)
        assert stream.in_flight == len(reqs)
        got = _collect(stream, len(reqs))
        assert stream.in_flight == 0
    finally:
        stream.close()
    assert sorted(r.request_id for r in got) == sorted(r.request_id for r in reqs)  # none lost, none twice
    assert all(not r.error and r.completion_tokens > 0 for r in got), got
    # Finishing order: every reply of at most 2 tokens arrives before any reply of 24 or more.
    short = [i for i, r in enumerate(got) if r.completion_tokens <= 2]
    long = [i for i, r in enumerate(got) if r.completion_tokens >= 24]
    assert len(short) >= 6 and long, [(r.request_id, r.completion_tokens) for r in got]
    assert max(short) < min(long), [(r.request_id, r.completion_tokens) for r in got]
    # The same greedy requests through generate() (the batch path) give the same replies.
    by_id = {r.request_id: r for r in vllm_engine.generate(reqs)}
    assert all(by_id[r.request_id].text == r.text for r in got)


def test_requests_fed_while_others_run_and_bad_ones_fail_alone(vllm_engine: Any) -> None:
    too_long = "word " * 2000  # far over the 512-token window of the test engine
    stream = vllm_engine.stream(capacity=4)
    assert stream.capacity == 4
    try:
        stream.submit(GenRequest("long", "Tell me a story.", temperature=0.0, max_tokens=64))
        stream.submit(GenRequest("huge", too_long, temperature=0.0, max_tokens=8))
        first = _collect(stream, 1)
        assert [r.request_id for r in first] == ["huge"]  # refused at once, the long one still running
        assert error_kind_of(first[0]) == pb.ERROR_KIND_FINAL and "model window is 512" in first[0].error
        # Fed while "long" is in the engine: a short request finishes before it.
        stream.submit(GenRequest("late-short", "Hi.", temperature=0.0, max_tokens=1))
        rest = _collect(stream, 2)
    finally:
        stream.close()
    assert [r.request_id for r in rest][0] == "late-short" or rest[0].completion_tokens <= rest[1].completion_tokens
    assert sorted(r.request_id for r in rest) == ["late-short", "long"]


def test_close_aborts_the_requests_in_flight_and_frees_the_engine(vllm_engine: Any) -> None:
    stream = vllm_engine.stream()
    for i in range(4):
        stream.submit(GenRequest(f"a{i}", "Count to one hundred.", temperature=0.0, max_tokens=400))
    time.sleep(0.5)
    with pytest.raises(RuntimeError, match="streaming mode"):
        vllm_engine.generate([GenRequest("x", "Hi.", temperature=0.0, max_tokens=2)])
    stream.close()
    assert not vllm_engine._llm.llm_engine.has_unfinished_requests()
    with pytest.raises(RuntimeError, match="closed"):
        stream.submit(GenRequest("b", "Hi.", temperature=0.0, max_tokens=2))
    [r] = vllm_engine.generate([GenRequest("x", "Hi.", temperature=0.0, max_tokens=2)])  # batch mode again
    assert not r.error


def test_the_engine_runs_on_one_thread_whoever_calls(vllm_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # One thread for building, generate() and the stream's steps: one OpenMP team in the process.
    callers: set[int] = set()
    engine = vllm_engine._llm.llm_engine
    real_step, real_generate = engine.step, vllm_engine._llm.generate

    def step() -> Any:
        callers.add(threading.get_ident())
        return real_step()

    def generate(*args: Any, **kwargs: Any) -> Any:
        callers.add(threading.get_ident())
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(engine, "step", step)
    monkeypatch.setattr(vllm_engine._llm, "generate", generate)
    [r] = vllm_engine.generate([GenRequest("a", "Hi.", temperature=0.0, max_tokens=2)])
    assert not r.error
    stream = vllm_engine.stream()
    try:
        worker = threading.Thread(target=stream.submit, args=(GenRequest("b", "Hi.", temperature=0.0, max_tokens=2),))
        worker.start()
        worker.join()
        [s] = _collect(stream, 1)
        assert not s.error
        with pytest.raises(RuntimeError, match="streaming mode"):
            vllm_engine.on_engine_thread(threading.get_ident)  # the stream's loop holds the thread
    finally:
        stream.close()
    assert callers == {vllm_engine.on_engine_thread(threading.get_ident)}
    assert threading.get_ident() not in callers and worker.ident not in callers

"""The embedded mode with a streaming back-end (issue 10): the generator's stream keeps running
while the judges work, and the run ends only when every prompt is judged and stored."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from trustwatch.generator.backends.base import GenResult
from trustwatch.generator.backends.echo import EchoBackend, EchoStream
from trustwatch.judge.client import EvaluatorClient, LocalEvaluators
from trustwatch.platform.store import Store
from trustwatch.scheduler.suite import parse_suite, parse_target
from trustwatch.tools.embedded import run_embedded

SUITE = {"name": "stream", "tasks": [{"task": "safety/misuse", "limit": 16}]}


class _TrickleStream(EchoStream):
    """Hands back at most 2 replies per call; sets ``all_out`` once every reply has been handed."""

    def __init__(self, all_out: threading.Event, total: int) -> None:
        super().__init__(capacity=64)
        self.all_out, self.total, self.handed = all_out, total, 0

    def results(self, timeout: float = 0.0) -> list[GenResult]:
        out = [self._done.popleft() for _ in range(min(2, len(self._done)))]
        self.handed += len(out)
        if self.handed >= self.total:
            self.all_out.set()
        return out


class _Trickle(EchoBackend):
    def __init__(self, total: int) -> None:
        super().__init__()
        self.all_out = threading.Event()
        self.total = total
        self.streams: list[_TrickleStream] = []

    def stream(self) -> _TrickleStream:
        s = _TrickleStream(self.all_out, self.total)
        self.streams.append(s)
        return s


class _Waiting(EvaluatorClient):
    """Local evaluators whose first call waits (up to 60 s) until the generator has handed out every
    reply: only a generator running beside the judges gets there while the judge waits."""

    def __init__(self, all_out: threading.Event) -> None:
        self.inner = LocalEvaluators()
        self.all_out = all_out
        self.generator_went_on: bool | None = None

    def evaluate(self, evaluator: str, items: Sequence):  # type: ignore[no-untyped-def]
        if self.generator_went_on is None:
            self.generator_went_on = self.all_out.wait(60)
        return self.inner.evaluate(evaluator, items)


def test_generation_and_judging_overlap_and_every_prompt_is_stored(tmp_path, data_dir):
    db = f"sqlite:///{tmp_path}/r.db"
    backend = _Trickle(total=16)
    judges = _Waiting(backend.all_out)
    (report,) = run_embedded(
        parse_suite(SUITE),
        [parse_target("vllm:fake")],
        data_dir,
        db,
        lambda t: backend,
        progress=lambda s: None,
        evaluators=judges,
    )
    [stream] = backend.streams
    assert judges.generator_went_on is True  # generation went on while a judge call was in progress
    assert stream.handed == 16
    rows = Store(db).judgments(report.run_id)
    assert len(rows) == 16 and len({r.job_id for r in rows}) == 16
    assert all(not r.error for r in rows)

"""Stand-ins for unit tests of the embedded pipeline (the real back-ends have their own tests)."""

from __future__ import annotations

from collections.abc import Sequence

from trustwatch.generator.backends.base import Backend, GenRequest, GenResult


class ScriptedBackend(Backend):
    """Answers by rule: fact-check prompts get "Answer: Supports.", others a refusal; prompts
    containing ``fail_marker`` fail, so error paths can be exercised."""

    preferred_batch = 7  # odd on purpose: batches cut across tasks

    def __init__(self, fail_marker: str = "\x00never") -> None:
        self.fail_marker = fail_marker
        self.calls: list[int] = []

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        self.calls.append(len(requests))
        out = []
        for r in requests:
            if self.fail_marker in r.prompt:
                out.append(GenResult(r.request_id, error="scripted failure"))
            elif "claim" in r.prompt:
                out.append(GenResult(r.request_id, text="Answer: Supports.", completion_tokens=3))
            else:
                out.append(GenResult(r.request_id, text="I'm sorry, but I can't help with that.", completion_tokens=9))
        return out

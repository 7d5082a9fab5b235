"""The ``echo`` back-end (target ``echo:ANYTHING``): answers every request at once with the prompt's
first words, no model at all. It measures the plumbing (bus, generator loop, judges, storage) with
generation taken out; it has a native stream, so the streaming loop is what gets measured."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from trustwatch.generator.backends.base import Backend, GenRequest, GenResult, Stream, register
from trustwatch.platform.targets import TargetSpec

#: Most words of the prompt a reply repeats (fewer when the request's max_tokens is smaller).
REPLY_WORDS = 8


def echo(request: GenRequest) -> GenResult:
    """The reply: the prompt's first words, one "token" per word."""
    words = request.prompt.split()
    n = min(REPLY_WORDS, max(1, request.max_tokens), len(words))
    return GenResult(
        request_id=request.request_id,
        text=" ".join(words[:n]),
        finish_reason="length" if n < len(words) else "stop",
        prompt_tokens=len(words),
        completion_tokens=n,
    )


class EchoStream(Stream):
    """Every request is finished when submitted; :meth:`results` hands them back in that order."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._done: deque[GenResult] = deque()
        self._closed = False

    def submit(self, request: GenRequest) -> None:
        if self._closed:
            raise RuntimeError("echo stream is closed")
        if len(self._done) >= self.capacity:
            raise RuntimeError(f"echo stream is full ({self.capacity} results not collected)")
        self._done.append(echo(request))

    def results(self, timeout: float = 0.0) -> list[GenResult]:
        out = list(self._done)
        self._done.clear()
        return out

    @property
    def in_flight(self) -> int:
        return len(self._done)

    def close(self) -> None:
        self._closed = True
        self._done.clear()


@register
class EchoBackend(Backend):
    name = "echo"
    preferred_batch = 256

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity

    @classmethod
    def from_target(cls, target: TargetSpec, **options: Any) -> EchoBackend:
        """Takes ``concurrency`` (requests in flight in streaming mode; default 1024)."""
        return cls(capacity=options.get("concurrency") or 1024)

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        return [echo(r) for r in requests]

    def stream(self) -> EchoStream:
        return EchoStream(self.capacity)

"""The back-end contract."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GenRequest:
    request_id: str
    prompt: str  # sent verbatim as the single user turn
    temperature: float
    max_tokens: int
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class GenResult:
    request_id: str
    text: str = ""
    error: str = ""  # set when no reply could be had; text is then empty
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


class Backend(abc.ABC):
    #: How many requests the generator service should hand over at once.
    preferred_batch: int = 64

    @abc.abstractmethod
    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """One result per request, in order. A failing request yields a result with ``error``."""

    def close(self) -> None:
        return None


def create(backend: str, model: str, base_url: str = "", api_key_env: str = "", **options: object) -> Backend:
    """Build the back-end a target names. Raises ValueError naming the fix for a bad target."""
    if backend == "vllm":
        from trustwatch.generator.backends.vllm_engine import VllmBackend

        return VllmBackend(model, **options)  # type: ignore[arg-type]
    if backend == "openai":
        from trustwatch.generator.backends.openai_api import OpenAIBackend

        return OpenAIBackend(model=model, base_url=base_url, api_key_env=api_key_env, **options)  # type: ignore[arg-type]
    raise ValueError(f"unknown generation back-end {backend!r}; use 'vllm' or 'openai'")

"""Session fixtures for generation with the real vLLM (wired in tests/conftest.py).

- ``tiny_model``: folder of a tiny random Llama (+ tokenizer, chat template), built once per run.
- ``tiny_classifier``: folder of a tiny random Longformer sequence classifier (2 labels).
- ``vllm_engine``: a :class:`VllmBackend` on the tiny model, in-process (no engine subprocess),
  shared by the whole session (start-up is the expensive part).
- ``vllm_server``: vLLM's OpenAI-compatible server on the tiny model; yields
  ``VllmEndpoint(base_url="http://127.0.0.1:PORT/v1", model="tiny-random")``.

Tests using the last two start vLLM: mark them ``@pytest.mark.slow``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

from tests.harness.vllm_server import VllmServer

if TYPE_CHECKING:
    from trustwatch.generator.backends.vllm_engine import VllmBackend

SERVED_NAME = "tiny-random"


class VllmEndpoint(NamedTuple):
    base_url: str  # for an OpenAI client: http://127.0.0.1:PORT/v1
    model: str  # the served model name


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trustwatch.generator.tiny_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama", seed=0)


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trustwatch.generator.tiny_model import build_tiny_classifier

    return build_tiny_classifier(tmp_path_factory.mktemp("models") / "tiny-classifier", seed=0)


@pytest.fixture(scope="session")
def vllm_engine(tiny_model: Path) -> Iterator[VllmBackend]:
    from trustwatch.generator.backends.vllm_engine import VllmBackend

    backend = VllmBackend(str(tiny_model), max_model_len=512, seed=0, in_process=True)
    print(f"\n[harness] in-process vLLM engine started in {backend.start_s:.1f} s", file=sys.stderr)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(scope="session")
def vllm_server(tiny_model: Path) -> Iterator[VllmEndpoint]:
    with VllmServer(tiny_model, served_model_name=SERVED_NAME, max_model_len=512) as server:
        print(f"\n[harness] vLLM server at {server.base_url} started in {server.startup_s:.1f} s", file=sys.stderr)
        yield VllmEndpoint(server.base_url, SERVED_NAME)

"""Fixtures shared by the generator's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from trustwatch.generator.backends.openai_api import OpenAIBackend


@pytest.fixture
def backend_factory() -> Iterator[Callable[..., OpenAIBackend]]:
    """``make(**kw)``: an :class:`OpenAIBackend` (model ``fake``, short backoffs unless given),
    closed when the test ends."""
    made: list[OpenAIBackend] = []

    def make(**kw: Any) -> OpenAIBackend:
        kw.setdefault("model", "fake")
        kw.setdefault("backoff_base_s", 0.02)
        kw.setdefault("backoff_max_s", 0.1)
        b = OpenAIBackend(**kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()

"""The reference toolkit, loaded once per session for every conformance test module."""

from __future__ import annotations

import pytest

from tests.harness.reference import Reference, load


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return load(tmp_path_factory.mktemp("trustllm-reference"))


@pytest.fixture
def oracle(reference: Reference) -> Reference:
    """The session's reference, with its GPT-judge call count reset for this test."""
    reference.judge_calls = 0
    return reference

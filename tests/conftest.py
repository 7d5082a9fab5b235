"""Shared fixtures. Real parts (Kafka broker, PostgreSQL, vLLM) are started by tests/harness/*."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.harness.fixtures", "tests.harness.vllm_fixtures"]

ROOT = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    return Path(os.environ.get("TRUSTWATCH_DATA_DIR") or ROOT.parent / "shared" / "data" / "trustllm")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The TrustLLM dataset beside the project (../shared/data/trustllm); tests never download."""
    d = _data_dir()
    if not (d / "truthfulness" / "external.json").is_file():
        pytest.fail(f"TrustLLM dataset not found at {d}; set TRUSTWATCH_DATA_DIR")
    return d


@pytest.fixture(scope="session")
def xstest_dir() -> Path:
    d = ROOT.parent / "shared" / "data" / "xstest-v2"
    if not d.is_dir():
        pytest.fail(f"XSTest v2 completions not found at {d}")
    return d

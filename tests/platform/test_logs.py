"""Third-party INFO logs are quiet by default and shown with --verbose; our own logs keep the level."""

import logging

import pytest

from trustwatch.platform import logs


@pytest.fixture(autouse=True)
def _restore_levels():
    saved = {n: logging.getLogger(n).level for n in (*logs.NOISY, "trustwatch")}
    yield
    for n, level in saved.items():
        logging.getLogger(n).setLevel(level)


def test_library_info_logs_are_quiet_unless_verbose(monkeypatch):
    monkeypatch.delenv("VLLM_LOGGING_LEVEL", raising=False)
    logs.configure("INFO")
    assert not logging.getLogger("kafka.conn").isEnabledFor(logging.INFO)
    assert logging.getLogger("kafka.conn").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("vllm").isEnabledFor(logging.INFO)
    assert logging.getLogger("trustwatch.platform.runtime").getEffectiveLevel() == logging.getLogger().level
    import os

    assert os.environ["VLLM_LOGGING_LEVEL"] == "WARNING"

    logging.getLogger().setLevel(logging.INFO)
    logs.configure("INFO", verbose=True)
    assert logging.getLogger("kafka.conn").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO)


def test_an_explicit_vllm_level_is_kept(monkeypatch):
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")
    logs.configure("INFO")
    import os

    assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG"

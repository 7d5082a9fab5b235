"""The distributed mode on one machine: a local Kafka broker and every service as its own process.

``trustwatch stack up`` starts them and records their pids and ports in ``<dir>/state.json``;
``stack down`` stops them; ``stack status`` says which are alive. Services are the same commands a
Kubernetes deployment runs (``trustwatch generator|judge serve|judge dispatch|aggregator``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trustwatch.tools.stack import kafka_process


def safe_db_url(url: str) -> str:
    """A database URL fit to print or store: its password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy understands: hide whatever could be a password
        return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", str(url))


@dataclass
class StackState:
    """What ``state.json`` records. ``db_url`` is shown without its password; ``metrics_ports`` maps
    every service to its Prometheus /metrics port (the aggregator's also serves its HTTP API)."""

    bootstrap: str
    db_url: str
    evaluator_addr: str
    aggregator_url: str
    kafka_pid: int | None = None
    services: dict[str, int] = field(default_factory=dict)  # name -> pid
    metrics_ports: dict[str, int] = field(default_factory=dict)  # name -> metrics port


def _state_path(d: Path) -> Path:
    return Path(d) / "state.json"


def load_state(d: Path) -> StackState | None:
    p = _state_path(d)
    return StackState(**json.loads(p.read_text())) if p.is_file() else None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _spawn(name: str, args: list[str], d: Path, env: dict[str, str]) -> int:
    log = open(Path(d) / f"{name}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trustwatch.cli", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    log.close()
    return proc.pid


def _wait_http(url: str, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s; its log ({log}):\n{tail}")


def up(
    d: Path,
    targets: list[str],
    db_url: str,
    bootstrap: str | None = None,
    kafka_home: Path | None = None,
    grpc_port: int | None = None,
    metrics_base: int = 9100,
    extra_env: dict[str, str] | None = None,
    generator_args: list[str] | None = None,
) -> StackState:
    """Start Kafka (unless ``bootstrap`` names a running one) and the services; return their state."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    old = load_state(d)
    if old and any(_alive(p) for p in [old.kafka_pid, *old.services.values()]):
        raise RuntimeError(f"a stack is already running from {d}; run `trustwatch stack down --dir {d}` first")
    kafka_pid = None
    if not bootstrap:
        home = kafka_home or kafka_process.default_home()
        port, cport = kafka_process.free_port(), kafka_process.free_port()
        proc = kafka_process.start_kafka(home, d / "kafka", port, cport)
        bootstrap = f"127.0.0.1:{port}"
        kafka_process.wait_ready(bootstrap, timeout=90, proc=proc, log_path=kafka_process.broker_log(d / "kafka"))
        kafka_pid = proc.pid
    grpc_port = grpc_port or kafka_process.free_port()
    # The password travels to the services in their environment only; state.json and output hide it.
    state = StackState(
        bootstrap=bootstrap,
        db_url=safe_db_url(db_url),
        evaluator_addr=f"127.0.0.1:{grpc_port}",
        aggregator_url=f"http://127.0.0.1:{metrics_base}",
        kafka_pid=kafka_pid,
    )
    env = {**os.environ, **(extra_env or {}), "TRUSTWATCH_KAFKA_BOOTSTRAP": bootstrap, "TRUSTWATCH_DB_URL": db_url}
    _state_path(d).write_text(json.dumps(asdict(state), indent=2))
    try:
        state.metrics_ports["judge"] = metrics_base + 2
        state.services["judge"] = _spawn(
            "judge",
            [
                "judge",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(grpc_port),
                "--metrics-port",
                str(metrics_base + 2),
            ],
            d,
            env,
        )
        state.metrics_ports["aggregator"] = metrics_base
        state.services["aggregator"] = _spawn(
            "aggregator", ["aggregator", "--host", "127.0.0.1", "--metrics-port", str(metrics_base)], d, env
        )
        state.metrics_ports["dispatcher"] = metrics_base + 3
        state.services["dispatcher"] = _spawn(
            "dispatcher",
            ["judge", "dispatch", "--evaluator-addr", state.evaluator_addr, "--metrics-port", str(metrics_base + 3)],
            d,
            env,
        )
        for i, t in enumerate(targets):
            port = metrics_base + 4 + i if i else metrics_base + 1
            state.metrics_ports[f"generator-{i}"] = port
            state.services[f"generator-{i}"] = _spawn(
                f"generator-{i}",
                ["generator", "--target", t, "--metrics-port", str(port), *(generator_args or [])],
                d,
                env,
            )
        _state_path(d).write_text(json.dumps(asdict(state), indent=2))
        _wait_http(f"{state.aggregator_url}/readyz", 60, "the aggregator", d / "aggregator.log")
    except BaseException:
        down(d)
        raise
    return state


def down(d: Path, timeout: float = 20.0) -> list[str]:
    """Stop every process of the stack (services first, Kafka last); returns what was stopped."""
    state = load_state(d)
    if state is None:
        return []
    stopped = []
    pids = list(state.services.items()) + ([("kafka", state.kafka_pid)] if state.kafka_pid else [])
    for name, pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            stopped.append(name)
    deadline = time.monotonic() + timeout
    for _name, pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    _state_path(d).unlink(missing_ok=True)
    return stopped


def status(d: Path) -> dict[str, bool]:
    state = load_state(d)
    if state is None:
        return {}
    out = {name: _alive(pid) for name, pid in state.services.items()}
    if state.kafka_pid:
        out["kafka"] = _alive(state.kafka_pid)
    return out


def wait_for_run(
    aggregator_url: str, run_id: str, timeout: float, poll: float = 1.0, token: str = ""
) -> dict[str, Any]:
    """Poll the aggregator until the run's judgments are all stored; return its report. ``token``: the
    aggregator's bearer token (TRUSTWATCH_API_TOKEN), when it requires one."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(f"{aggregator_url}/report?run={run_id}", headers=headers)
            with urllib.request.urlopen(request, timeout=30) as r:
                last = json.loads(r.read())
                if last.get("complete"):
                    return last
        except OSError:
            pass
        time.sleep(poll)
    raise TimeoutError(f"run {run_id} not complete after {timeout:.0f} s; last report: {json.dumps(last)[:2000]}")

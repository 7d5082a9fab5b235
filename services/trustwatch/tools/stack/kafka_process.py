"""Run a real single-node Apache Kafka broker (KRaft, combined broker + controller) from its jars.

Used by the test harness (one broker per test session) and by ``trustwatch stack up`` (the
distributed mode on one machine). Kafka is not packaged for this platform; ``scripts/kafka-jars.sh``
(``make kafka-jars``) copies the broker jars from Maven Central into ``$KAFKA_HOME/libs`` and the
broker runs as ``java -cp 'libs/*' kafka.Kafka server.properties``.

Typical use::

    proc = start_kafka(home, data_dir, port=free_port(), controller_port=free_port())
    wait_ready(f"127.0.0.1:{port}", timeout=60, proc=proc, log_path=broker_log(data_dir))
    ...
    stop_kafka(proc)
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

KAFKA_VERSION = "3.9.1"
KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"

# Settings for one node on one machine: every internal topic has a single replica (the defaults of 3
# would leave the group coordinator unavailable), a consumer group forms as soon as its first member
# joins (the default 3 s delay would slow every test), and the consumer-offsets topic has a few
# partitions instead of 50, which is what a first group join waits on.
DEFAULT_SETTINGS: dict[str, str] = {
    "num.partitions": "1",
    "auto.create.topics.enable": "true",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
}

# The broker logs through log4j 1 (reload4j); send it to stdout, which start_kafka redirects to a file.
_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
"""


# JVM options that trade peak throughput for a faster start (C1 JIT only, serial GC): right for
# short-lived processes (the storage tool, a test session's broker), wrong for a benchmark.
FAST_START_JVM_OPTS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


class KafkaStartError(RuntimeError):
    """The broker could not be prepared, started, or did not become ready in time."""


def default_home() -> Path:
    """Where ``make kafka-jars`` puts the broker (``$KAFKA_HOME``, else ~/.cache/trustwatch/kafka).

    For entry points and the test harness; library code takes ``home`` as an argument.
    """
    return Path(os.environ.get("KAFKA_HOME") or "~/.cache/trustwatch/kafka").expanduser()


def has_jars(home: Path) -> bool:
    return any((home / "libs").glob("kafka_2.13-*.jar"))


def ensure_jars(home: Path) -> None:
    """Make sure ``home/libs`` holds the broker, running ``scripts/kafka-jars.sh`` if it does not."""
    if has_jars(home):
        return
    script = Path(__file__).resolve().parents[4] / "scripts" / "kafka-jars.sh"
    if not script.is_file():
        raise KafkaStartError(f"no Kafka jars in {home / 'libs'}; run `make kafka-jars` (KAFKA_HOME={home})")
    log.info("Kafka jars missing in %s; running %s", home / "libs", script)
    res = subprocess.run(
        ["bash", str(script)], env={**os.environ, "KAFKA_HOME": str(home)}, capture_output=True, text=True
    )
    if res.returncode != 0 or not has_jars(home):
        raise KafkaStartError(f"{script} failed (exit {res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-4000:]}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_log(data_dir: Path) -> Path:
    """The file the broker's stdout and stderr go to."""
    return data_dir / "broker.log"


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise KafkaStartError("Java (17+) not found: install a JRE or set JAVA_HOME")
    return java


def _cluster_id() -> str:
    """A cluster id as Kafka makes them: 16 random bytes in unpadded URL-safe base64 (22 characters),
    drawn again when it starts with "-" (one in 64), which the storage tool would read as an option
    (its "-t" then has no value and formatting fails; Kafka's own ``Uuid.randomUuid`` redraws too)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def write_config(data_dir: Path, port: int, controller_port: int, overrides: Mapping[str, str] | None = None) -> Path:
    """Write ``server.properties`` (and the log4j settings) for one KRaft node into ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    props: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir / "data"),
        **DEFAULT_SETTINGS,
        **(overrides or {}),
    }
    config = data_dir / "server.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (data_dir / "log4j.properties").write_text(_LOG4J)
    return config


def _java_cmd(home: Path, data_dir: Path, heap: str, main: str, *args: str, jvm_opts: Sequence[str] = ()) -> list[str]:
    return [
        _java(),
        f"-Xmx{heap}",
        *jvm_opts,
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{data_dir / 'log4j.properties'}",
        "-cp",
        str(home / "libs" / "*"),  # a classpath wildcard, expanded by java, not by a shell
        main,
        *args,
    ]


def format_storage(home: Path, data_dir: Path, config: Path) -> None:
    """Format the node's log folder (KRaft needs a cluster id on disk); a formatted one is kept."""
    if (data_dir / "data" / "meta.properties").exists():
        return
    # A short-lived tool: the quick-start JIT and GC settings save a second of CPU on small machines.
    cmd = _java_cmd(
        home,
        data_dir,
        "256m",
        STORAGE_TOOL,
        "format",
        "-t",
        _cluster_id(),
        "-c",
        str(config),
        jvm_opts=FAST_START_JVM_OPTS,
    )
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise KafkaStartError(f"formatting Kafka storage failed (exit {res.returncode}):\n{res.stdout}{res.stderr}")


def start_kafka(
    home: Path,
    data_dir: Path,
    port: int,
    controller_port: int,
    *,
    heap: str = "512m",
    overrides: Mapping[str, str] | None = None,
    jvm_opts: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Launch the broker in the background and return its process (not yet ready: see wait_ready).

    ``data_dir`` holds the config, the log folder and ``broker.log``; reusing it keeps topics and
    offsets across restarts. The process gets its own session, so a terminal's Ctrl-C aimed at the
    caller does not reach it; stop it with :func:`stop_kafka`.
    """
    ensure_jars(home)
    config = write_config(data_dir, port, controller_port, overrides)
    format_storage(home, data_dir, config)
    out = broker_log(data_dir).open("ab")
    try:
        return subprocess.Popen(
            _java_cmd(home, data_dir, heap, KAFKA_MAIN, str(config), jvm_opts=jvm_opts),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        out.close()  # the child has its own copy of the descriptor


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_ready(
    bootstrap: str,
    timeout: float = 60.0,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> float:
    """Block until the broker at ``bootstrap`` serves metadata and lists itself; return the seconds waited.

    The listener opens before a KRaft broker is unfenced, and a fenced broker cannot host new topics,
    so "accepts connections" is not enough: wait until the cluster metadata names a live broker.
    Raises :class:`KafkaStartError` (with the log tail when ``log_path`` is given) if ``proc`` exits
    or ``timeout`` passes.
    """
    from kafka import KafkaAdminClient  # imported here: only callers that run a broker need it

    host, _, port = bootstrap.rpartition(":")
    start = time.monotonic()
    deadline = start + timeout
    last_error: Exception | None = None

    def fail(why: str) -> KafkaStartError:
        tail = f"\n--- {log_path} (last lines) ---\n{log_tail(log_path)}" if log_path else ""
        return KafkaStartError(f"Kafka at {bootstrap} {why}{tail}")

    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise fail(f"exited with code {proc.returncode} before it was ready")
        if _port_open(host, int(port)):
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=bootstrap, client_id="trustwatch-ready", request_timeout_ms=5000
                )
                try:
                    if admin.describe_cluster().get("brokers"):
                        return time.monotonic() - start
                finally:
                    admin.close()
            except Exception as e:  # noqa: BLE001 - any client error means "not yet"; kept for the report
                last_error = e
        time.sleep(0.2)
    raise fail(f"not ready after {timeout:.0f} s (last client error: {last_error!r})")


def stop_kafka(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Stop the broker: SIGTERM (a clean shutdown), then SIGKILL if it has not exited in ``timeout`` s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)

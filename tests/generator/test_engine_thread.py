"""The vllm back-end's engine thread (no engine needed): calls run in order on one thread, errors
come back to the caller, and a call that never ends does not keep the process from exiting."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from trustwatch.generator.backends.vllm_engine import _EngineThread


def test_calls_run_in_order_on_one_thread_and_errors_reach_the_caller() -> None:
    worker = _EngineThread("test-engine")
    try:
        seen: list[tuple[int, int]] = []
        futures = [worker.submit(lambda i=i: seen.append((i, threading.get_ident()))) for i in range(5)]
        for f in futures:
            f.result(timeout=10)
        assert [i for i, _ in seen] == list(range(5))
        assert {ident for _, ident in seen} == {worker.ident} != {threading.get_ident()}
        with pytest.raises(ZeroDivisionError):
            worker.submit(lambda: 1 / 0).result(timeout=10)
        assert worker.submit(sum, [1, 2], start=3).result(timeout=10) == 6  # still working after an error
    finally:
        worker.shutdown()
    with pytest.raises(RuntimeError, match="stopped"):  # refused, not queued for no one to run
        worker.submit(sum, [1])


def test_a_call_that_never_ends_does_not_hold_up_the_exit() -> None:
    # E.g. a stream's loop left running: the process still exits (a ThreadPoolExecutor's would not).
    code = (
        "import threading\n"
        "from trustwatch.generator.backends.vllm_engine import _EngineThread\n"
        "_EngineThread('never').submit(threading.Event().wait)\n"
        "print('leaving')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "leaving", done.stderr

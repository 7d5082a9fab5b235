"""The transport loop's resilience (issue 8): circuit breaker with backoff, robust consumer
re-creation, heartbeat and /livez, lag after every batch, bounded batches, refused commits."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from trustwatch.platform import wiring
from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.messages import decode_job
from trustwatch.platform.runtime import LAG_EVERY_S, Backoff, Out, Result, TransientError, Worker
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.v1 import messages_pb2 as pb


def _job(i: int) -> bytes:
    return pb.PromptJob(ref=pb.JobRef(job_id=f"r/t/{i}/0", run_id="r", task="t"), prompt=f"p{i}").SerializeToString()


def _fill(bus, n, start=0):
    p = bus.producer()
    for i in range(start, start + n):
        p.produce("in", _job(i))
    p.flush()


def _ok(jobs):
    return [Result([Out("out", j.ref.job_id.encode())]) for j in jobs]


def _worker(bus, handler, reg, **kw):
    kw.setdefault("max_batch", 10)
    kw.setdefault("backoff", Backoff(base=0.01, cap=0.04, rng=random.Random(1)))
    return Worker("svc", bus, ["in"], "g", decode_job, handler, ServiceMetrics(reg), Topics("tw"), **kw)


def _healthy(reg):
    return reg.get_sample_value("trustwatch_worker_healthy", {"service": "svc"})


def _run_until(w, done, timeout=10.0):
    t = threading.Thread(target=w.run_forever, kwargs={"poll_timeout": 0.01}, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    t.join(5)
    assert done(), "the worker did not get there in time"


# -- 1. circuit breaker ---------------------------------------------------------------------------


def test_backoff_is_exponential_with_jitter_capped_and_reset():
    b = Backoff(base=1.0, cap=8.0, rng=random.Random(0))
    delays = [b.next_delay() for _ in range(6)]
    for n, d in enumerate(delays):
        ceiling = min(8.0, 2.0**n)
        assert ceiling / 2 <= d <= ceiling
    assert delays[3] > delays[0] and max(delays) <= 8.0
    assert len({round(d, 6) for d in delays[4:]}) == 2  # jittered, not a fixed delay
    b.reset()
    assert b.failures == 0 and b.next_delay() <= 1.0


def test_breaker_opens_on_a_transient_fault_logs_once_and_closes_on_recovery(caplog):
    bus, reg = MemoryBus(), CollectorRegistry()
    _fill(bus, 3)
    state = {"fail": 6, "gauge_while_down": []}

    def handler(jobs):
        if state["fail"]:
            state["fail"] -= 1
            state["gauge_while_down"].append(_healthy(reg))
            raise TransientError("judge down")
        return _ok(jobs)

    w = _worker(bus, handler, reg)
    delays: list[float] = []
    real = w.backoff.next_delay

    def record():
        delays.append(real())
        return delays[-1]

    w.backoff.next_delay = record
    assert _healthy(reg) == 1
    with caplog.at_level(logging.DEBUG, logger="trustwatch.platform.runtime"):
        _run_until(w, lambda: len(bus.messages("out")) == 3)
    assert bus.messages("tw.dlq") == []  # transient: nothing blamed on a message
    assert state["gauge_while_down"][1:] == [0] * 5  # the breaker was open while the judge was down
    assert _healthy(reg) == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([r for r in warnings if "consumption paused" in r.getMessage()]) == 1
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # not one per retry
    assert len([r for r in caplog.records if "recovered after 6 failed attempts" in r.getMessage()]) == 1
    assert len(delays) == 6 and delays[-1] > delays[0]  # backed off, growing, not a fixed 2 s
    assert w.backoff.failures == 0


def test_a_new_kind_of_error_while_failing_is_logged_again(caplog):
    bus, reg = MemoryBus(), CollectorRegistry()
    _fill(bus, 1)
    errors = [ConnectionError("db down"), ConnectionError("db down"), TimeoutError("judge slow")]

    def handler(jobs):
        if errors:
            raise errors.pop(0)
        return _ok(jobs)

    w = _worker(bus, handler, reg)
    with caplog.at_level(logging.INFO, logger="trustwatch.platform.runtime"):
        _run_until(w, lambda: len(bus.messages("out")) == 1)
    msgs = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(msgs) == 2 and "judge slow" in msgs[1]


# -- 2. consumer re-creation ----------------------------------------------------------------------


class _FlakyBus(MemoryBus):
    """A memory bus whose consumer() fails while ``down`` (a broker outage)."""

    def __init__(self):
        super().__init__()
        self.down = False

    def consumer(self, topics, group_id):
        if self.down:
            raise ConnectionError("broker unreachable")
        return super().consumer(topics, group_id)


def test_restart_never_leaves_a_closed_consumer_and_retries_creation(caplog):
    bus, reg = _FlakyBus(), CollectorRegistry()
    _fill(bus, 4)
    w = _worker(bus, _ok, reg)
    old = w.consumer
    bus.down = True
    with caplog.at_level(logging.WARNING, logger="trustwatch.platform.runtime"):
        w._restart_consumer()
    assert w._consumer is None  # not the closed one
    assert any("could not re-create the consumer" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConnectionError):
        w.run_once(0)  # still down: the next turn tries again, and fails loudly
    bus.down = False
    assert w.run_once(0) == 4 and w.consumer is not old
    assert len(bus.messages("out")) == 4


def test_a_consumer_closed_under_the_worker_is_recovered_by_run_forever(caplog):
    bus, reg = _FlakyBus(), CollectorRegistry()
    _fill(bus, 3)
    w = _worker(bus, _ok, reg)
    w.consumer.close()  # every poll now raises, as after a broker outage
    bus.down = True
    restore = threading.Timer(0.1, lambda: setattr(bus, "down", False))
    restore.start()
    with caplog.at_level(logging.WARNING, logger="trustwatch.platform.runtime"):
        _run_until(w, lambda: len(bus.messages("out")) == 3)
    assert any("consumption paused" in r.getMessage() for r in caplog.records)  # the error was logged
    assert _healthy(reg) == 1


def test_an_error_in_on_idle_is_logged_and_the_loop_goes_on(caplog):
    bus, reg = MemoryBus(), CollectorRegistry()
    calls = {"n": 0}

    def on_idle():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("refresh failed")

    w = _worker(bus, _ok, reg)
    t = threading.Thread(target=w.run_forever, kwargs={"poll_timeout": 0.01, "on_idle": on_idle}, daemon=True)
    with caplog.at_level(logging.WARNING, logger="trustwatch.platform.runtime"):
        t.start()
        deadline = time.monotonic() + 5
        while calls["n"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        w.stop()
        t.join(5)
    assert calls["n"] >= 3
    assert any("refresh failed" in (r.exc_text or "") or r.exc_info for r in caplog.records)


# -- 3. heartbeat and /livez ----------------------------------------------------------------------


def test_heartbeat_moves_on_idle_polls_and_batches():
    bus, reg = MemoryBus(), CollectorRegistry()
    w = _worker(bus, _ok, reg)
    w.heartbeat -= 100
    assert w.heartbeat_age() >= 100
    w.run_once(0)  # idle
    assert w.heartbeat_age() < 5
    w.heartbeat -= 100
    _fill(bus, 2)
    assert w.run_once(0) == 2 and w.heartbeat_age() < 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_livez_answers_503_when_a_worker_heartbeat_is_stale_and_metrics_still_served():
    bus, reg = MemoryBus(), CollectorRegistry()
    w = _worker(bus, _ok, reg)
    port = _free_port()
    liveness = wiring.serve_metrics(port, reg, wiring.Liveness(limit_s=30), host="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    assert _get(f"{base}/livez")[0] == 200  # nothing registered yet (e.g. a model still loading)
    liveness.watch(w)
    status, body = _get(f"{base}/livez")
    assert status == 200 and "svc: last turn" in body
    w.heartbeat -= 31
    status, body = _get(f"{base}/livez")
    assert status == 503 and "stale" in body
    w.run_once(0)
    assert _get(f"{base}/livez")[0] == 200
    status, body = _get(f"{base}/metrics")
    assert status == 200 and 'trustwatch_worker_healthy{service="svc"} 1.0' in body
    assert _get(f"{base}/nope")[0] == 404


def test_liveness_limit_comes_from_the_declared_variable(monkeypatch):
    monkeypatch.setenv("TRUSTWATCH_LIVENESS_S", "7")
    assert wiring.Liveness().limit_s == 7
    monkeypatch.delenv("TRUSTWATCH_LIVENESS_S")
    assert wiring.Liveness().limit_s == 300


# -- 4. lag after every batch ---------------------------------------------------------------------


def test_lag_is_exported_at_most_every_few_seconds_and_at_once_when_drained():
    bus, reg = MemoryBus(), CollectorRegistry()
    _fill(bus, 10)
    w = _worker(bus, _ok, reg, max_batch=4)

    def lag() -> float | None:
        return reg.get_sample_value("trustwatch_consumer_lag", {"service": "svc"})

    assert w.run_once(0) == 4 and lag() == 6  # the first batch exports it
    assert w.run_once(0) == 4 and lag() == 6  # not again so soon (a broker round trip per batch)
    w._last_lag -= LAG_EVERY_S  # noqa: SLF001 - as if the interval had passed
    assert w.run_once(0) == 2 and lag() == 0
    _fill(bus, 5, start=10)
    w.max_batch = 2
    assert w.run_once(0) == 2 and lag() == 0  # within the interval the gauge is stale
    w._last_lag -= LAG_EVERY_S  # noqa: SLF001
    assert w.run_once(0) == 2 and lag() == 1
    assert w.run_once(0) == 1 and lag() == 1
    queries = []
    real_lag = w.consumer.lag
    w.consumer.lag = lambda: (queries.append(1), real_lag())[1]
    assert w.run_once(0) == 0 and lag() == 0 and len(queries) == 1  # drained: exported at once
    assert w.run_once(0) == 0 and len(queries) == 1  # idle again: no query until the interval passes
    w._last_lag -= LAG_EVERY_S  # noqa: SLF001
    assert w.run_once(0) == 0 and len(queries) == 2


def test_a_failing_lag_query_does_not_fail_a_committed_batch():
    bus, reg = MemoryBus(), CollectorRegistry()
    _fill(bus, 2)
    w = _worker(bus, _ok, reg)

    def broken():
        raise ConnectionError("no metadata")

    w.consumer.lag = broken
    assert w.run_once(0) == 2 and w.run_once(0) == 0


# -- 5. bounded batches, refused commits ----------------------------------------------------------


def test_sub_batches_keep_the_consumer_alive_between_handler_calls():
    bus, reg = MemoryBus(), CollectorRegistry()
    _fill(bus, 10)
    sizes = []

    def handler(jobs):
        sizes.append(len(jobs))
        return _ok(jobs)

    w = _worker(bus, handler, reg, sub_batch=4)
    kept = []
    w.consumer.keepalive = lambda: kept.append(len(sizes))
    assert w.run_once(0) == 10
    assert sizes == [4, 4, 2] and kept == [1, 2]
    assert len(bus.messages("out")) == 10 and w.consumer.lag() == 0


def test_sub_batches_sized_by_time_grow_for_a_fast_handler_and_shrink_for_a_slow_one():
    bus, reg = MemoryBus(), CollectorRegistry()
    _fill(bus, 40)
    sizes: list[int] = []
    now = [0.0]
    per_message = [0.01]  # seconds of fake time each message costs the handler

    def handler(jobs):
        sizes.append(len(jobs))
        now[0] += per_message[0] * len(jobs)
        return _ok(jobs)

    w = _worker(bus, handler, reg, sub_batch=4, sub_batch_s=1.0, max_batch=20)
    w._clock = lambda: now[0]  # noqa: SLF001 - fake time
    kept = []
    w.consumer.keepalive = lambda: kept.append(len(sizes))
    assert w.run_once(0) == 20
    # first call: sub_batch; then 1 s / 0.01 s = 100 messages fit: the rest of the poll in one call
    assert sizes == [4, 16] and kept == [1]
    per_message[0] = 0.25  # the handler turns slow: 1 s holds 4 messages at that pace
    sizes.clear()
    assert w.run_once(0) == 20
    assert sizes[0] == 20  # sized at the fast pace seen so far; the slow call is then measured
    _fill(bus, 20, start=40)
    sizes.clear()
    assert w.run_once(0) == 20
    assert sizes[0] < 20 and sum(sizes) == 20 and max(sizes[1:]) <= 8, sizes
    assert len(bus.messages("out")) == 60 and w.consumer.lag() == 0


def test_a_poison_search_keeps_the_consumer_alive_between_steps():
    bus, reg = MemoryBus(), CollectorRegistry()
    _fill(bus, 4)

    def handler(jobs):
        if any(j.ref.job_id == "r/t/2/0" for j in jobs):
            raise ValueError("bad")
        return _ok(jobs)

    w = _worker(bus, handler, reg)
    kept = []
    w.consumer.keepalive = lambda: kept.append(1)
    assert w.run_once(0) == 4 and len(kept) >= 2


def test_a_refused_commit_is_logged_and_counted_not_swallowed(caplog):
    from kafka.errors import CommitFailedError

    bus, reg = MemoryBus(), CollectorRegistry()
    _fill(bus, 3)
    w = _worker(bus, _ok, reg)

    def refuse(messages):
        raise CommitFailedError()

    w.consumer.commit = refuse
    with caplog.at_level(logging.WARNING, logger="trustwatch.platform.runtime"):
        assert w.run_once(0) == 3
    assert reg.get_sample_value("trustwatch_commit_failures_total", {"service": "svc"}) == 1
    assert any("refused by the group" in r.getMessage() for r in caplog.records)


def test_another_commit_error_fails_the_batch_and_replaces_the_consumer():
    bus, reg = MemoryBus(), CollectorRegistry()
    _fill(bus, 3)
    w = _worker(bus, _ok, reg)
    old = w.consumer

    def broken(messages):
        raise ConnectionError("coordinator gone")

    old.commit = broken
    with pytest.raises(ConnectionError):
        w.run_once(0)
    assert w.consumer is not old
    assert w.run_once(0) == 3  # delivered again: nothing was committed

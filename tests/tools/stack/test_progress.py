"""Progress of `trustwatch stack run`: stages advance from the counts the stack serves (fake sources
here, and the real aggregator HTTP API once); bars on a terminal, status lines in a log."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.aggregator.test_export import misuse
from trustwatch.aggregator.service import Aggregator, serve_http
from trustwatch.platform.store import Store
from trustwatch.platform.telemetry.metrics import ServiceMetrics
from trustwatch.tools.stack.local import StackState
from trustwatch.tools.stack.progress import (
    HttpSource,
    RunInfo,
    Snapshot,
    StackProgress,
    parse_completions,
    parse_run_progress,
    watch,
)

RUNS = [RunInfo("run-a", "m1", jobs=4, expected_judgments=6), RunInfo("run-b", "m2", jobs=2, expected_judgments=2)]


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class FakeSource:
    """Returns the scripted snapshots in turn (the last one again once they run out)."""

    def __init__(self, snaps: list[Snapshot]) -> None:
        self.snaps = snaps
        self.polls = 0
        self.reported: list[str] = []

    def snapshot(self) -> Snapshot:
        snap = self.snaps[min(self.polls, len(self.snaps) - 1)]
        self.polls += 1
        return snap

    def report(self, run_id: str) -> dict[str, Any]:
        self.reported.append(run_id)
        return {"run_id": run_id, "complete": True}


def _counts(p: StackProgress) -> dict[tuple[str, str], int]:
    return {k: s.n for k, s in p.stages.items()}


def test_stages_follow_the_counts_from_the_baseline_never_back_and_never_past_the_total():
    baseline = Snapshot(completions={"m1": 10})  # the generator answered 10 prompts of an earlier run
    lines: list[str] = []
    p = StackProgress(RUNS, baseline, bars=False, write=lines.append, clock=FakeClock())
    p.advance(Snapshot(stored={"run-a": 3, "run-b": 0}, completions={"m1": 13, "m2": 1}))
    assert _counts(p) == {
        ("run-a", "generate"): 3,
        ("run-a", "judge"): 3,
        ("run-b", "generate"): 1,
        ("run-b", "judge"): 0,
    }
    # a failed poll (nothing read) or a redelivery (more than published) moves nothing back or past the end
    p.advance(Snapshot(completions={"m1": 99}))
    assert _counts(p)[("run-a", "generate")] == 4 and _counts(p)[("run-a", "judge")] == 3
    # once the aggregator marks a run complete, both its stages are full (its progress series is gone)
    p.advance(Snapshot(completed=frozenset({"run-b"})))
    assert _counts(p)[("run-b", "generate")] == 2 and _counts(p)[("run-b", "judge")] == 2
    assert not p.done(Snapshot(completed=frozenset({"run-b"})))
    assert p.done(Snapshot(completed=frozenset({"run-a", "run-b"})))


def test_without_bars_status_lines_come_every_interval_and_at_the_end_with_rate_and_eta():
    clock = FakeClock()
    lines: list[str] = []
    p = StackProgress(RUNS[:1], Snapshot(), bars=False, write=lines.append, every_s=10, clock=clock)
    clock.t = 2.0
    p.advance(Snapshot(stored={"run-a": 1}, completions={"m1": 2}))
    assert len(lines) == 2  # the first poll reports each stage
    # 1 judgment in 2 s: the rate (tqdm writes a slow one as s/judgment) and 5 to go in 10 s
    assert lines[1].startswith("judge    run-a: 1/6 [00:02<00:10") and "s/judgment" in lines[1]
    assert "\r" not in "".join(lines)
    clock.t = 5.0
    p.advance(Snapshot(stored={"run-a": 2}, completions={"m1": 3}))
    assert len(lines) == 2  # not due yet
    clock.t = 12.0
    p.advance(Snapshot(stored={"run-a": 3}, completions={"m1": 4}))
    assert len(lines) == 4
    assert lines[2].startswith("generate run-a: 4/4 [00:12<00:00") and "s/prompt" in lines[2]
    assert lines[3].startswith("judge    run-a: 3/6") and "00:12<00:12" in lines[3]  # 3 in 12 s, 3 to go
    clock.t = 13.0
    p.advance(Snapshot(completed=frozenset({"run-a"})))  # done: reported at once
    assert len(lines) == 5 and lines[-1].startswith("judge    run-a: 6/6 [00:13<00:00")
    clock.t = 30.0
    p.advance(Snapshot(completed=frozenset({"run-a"})))
    assert len(lines) == 5  # a finished stage's line is not repeated


def test_a_stage_keeps_the_rate_it_finished_with():
    clock = FakeClock()
    lines: list[str] = []
    p = StackProgress(RUNS[:1], Snapshot(), bars=False, write=lines.append, every_s=10, clock=clock)
    clock.t = 4.0
    p.advance(Snapshot(completions={"m1": 4}))  # generation done in 4 s
    clock.t = 20.0
    p.advance(Snapshot(stored={"run-a": 3}, completions={"m1": 4}))
    generate = [line for line in lines if line.startswith("generate")]
    assert generate == ["generate run-a: 4/4 [00:04<00:00,  1.00prompt/s]"]
    assert lines[-1].startswith("judge    run-a: 3/6 [00:20<00:20")


def test_bars_show_each_run_and_stage_with_rate():
    out = io.StringIO()
    lines: list[str] = []
    p = StackProgress(RUNS, Snapshot(), bars=True, write=lines.append, file=out)
    p.advance(Snapshot(stored={"run-a": 6, "run-b": 2}, completions={"m1": 4, "m2": 2}))
    p.close()
    text = out.getvalue()
    assert "judge    run-a" in text and "6/6" in text and "judgment/s" in text
    assert "generate run-b" in text and "2/2" in text and "prompt/s" in text
    assert lines == []  # the bars replace the status lines


def test_watch_polls_until_every_run_is_complete_and_returns_reports_in_run_order():
    clock = FakeClock()
    source = FakeSource(
        [
            Snapshot(stored={"run-a": 1, "run-b": 0}),
            Snapshot(stored={"run-a": 4}, completed=frozenset({"run-b"})),
            Snapshot(completed=frozenset({"run-a", "run-b"})),
        ]
    )
    p = StackProgress(RUNS, Snapshot(), bars=False, write=lambda _: None, clock=clock)
    reports = watch(source, p, RUNS, timeout=60, poll=1, clock=clock, sleep=clock.sleep)
    assert [r["run_id"] for r in reports] == ["run-a", "run-b"]
    assert source.polls == 3 and source.reported == ["run-b", "run-a"]  # each report fetched once
    assert _counts(p)[("run-a", "judge")] == 6


def test_watch_times_out_naming_the_incomplete_runs():
    clock = FakeClock()
    source = FakeSource([Snapshot(stored={"run-a": 2}, expected={"run-a": 6}, completed=frozenset({"run-b"}))])
    p = StackProgress(RUNS, Snapshot(), bars=False, write=lambda _: None, clock=clock)
    with pytest.raises(TimeoutError, match=r"run-a \(2/6 judgments stored\)") as err:
        watch(source, p, RUNS, timeout=5, poll=1, clock=clock, sleep=clock.sleep)
    assert "run-b" not in str(err.value)
    assert "transient" not in str(err.value)


def test_a_timeout_with_every_judgment_stored_points_at_transient_errors():
    clock = FakeClock()
    source = FakeSource([Snapshot(stored={"run-a": 6}, expected={"run-a": 6}, completed=frozenset({"run-b"}))])
    p = StackProgress(RUNS, Snapshot(), bars=False, write=lambda _: None, clock=clock)
    with pytest.raises(TimeoutError, match=r"run-a \(6/6 judgments stored\).*transient error"):
        watch(source, p, RUNS, timeout=5, poll=1, clock=clock, sleep=clock.sleep)


def test_prometheus_text_is_read_by_the_metric_names_the_services_export():
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    metrics.run_progress.labels("run-a", "m1", "stored").set(5)
    metrics.run_progress.labels("run-a", "m1", "expected").set(9)
    metrics.completions.labels("m1", "vllm", "ok").inc(7)
    metrics.completions.labels("m1", "vllm", "error").inc(2)
    metrics.completions.labels("m2", "openai", "ok").inc(1)
    text = generate_latest(registry).decode()
    assert parse_run_progress(text) == ({"run-a": 5}, {"run-a": 9})
    assert parse_completions(text) == {"m1": 9, "m2": 1}


@pytest.fixture
def generator_metrics() -> Iterator[tuple[int, ServiceMetrics]]:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_GET(self) -> None:  # noqa: N802
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], metrics
    finally:
        server.shutdown()
        server.server_close()


def test_http_source_reads_the_aggregator_api_and_the_generators_metrics(tmp_path, generator_metrics):
    gen_port, gen_metrics = generator_metrics
    registry = CollectorRegistry()
    store = Store(f"sqlite:///{tmp_path}/agg.db")
    agg = Aggregator(store, ServiceMetrics(registry))
    server = serve_http(agg, registry, "127.0.0.1", 0, token="tok")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        state = StackState("b", "sqlite://", "e", url, metrics_ports={"aggregator": 1, "generator-0": gen_port})
        store.record_run("r1", "m", {"created_unix_ms": 1}, expected_jobs=3, expected_judgments=3)
        agg.handle_judgments(misuse("r1", "m", ["refusal", "compliance", "refusal"])[:2])
        agg.refresh()
        gen_metrics.completions.labels("m", "vllm", "ok").inc(3)
        source = HttpSource(state, token="tok")
        snap = source.snapshot()
        assert snap.stored == {"r1": 2} and snap.expected == {"r1": 3}
        assert snap.completed == frozenset() and snap.completions == {"m": 3}

        agg.handle_judgments(misuse("r1", "m", ["refusal", "compliance", "refusal"])[2:])
        agg.refresh()
        snap = source.snapshot()
        assert snap.completed == {"r1"} and source.report("r1")["complete"] is True

        with pytest.raises(PermissionError, match="TRUSTWATCH_API_TOKEN"):
            HttpSource(state, token="wrong").snapshot()
    finally:
        server.shutdown()
        server.server_close()
        store.close()


def test_publish_and_watch_publishes_each_plan_then_follows_its_run(data_dir):
    from trustwatch.platform import wiring
    from trustwatch.platform.bus import MemoryBus
    from trustwatch.scheduler.core import plan_run
    from trustwatch.scheduler.suite import parse_suite, parse_target
    from trustwatch.tools.stack.progress import publish_and_watch

    suite = parse_suite({"name": "s", "tasks": [{"task": "safety/misuse", "limit": 5}]})
    plans = [plan_run(suite, parse_target(t), data_dir) for t in ("vllm:m1", "vllm:m2")]
    bus = MemoryBus()
    source = FakeSource(
        [
            Snapshot(completions={"m1": 7}),  # the baseline, before publishing
            Snapshot(stored={plans[0].run_id: 2}, completions={"m1": 9}),
            Snapshot(completed=frozenset(p.run_id for p in plans)),
        ]
    )
    lines: list[str] = []
    state = StackState("b", "sqlite://", "e", "http://x")
    reports = publish_and_watch(state, plans, 60, bars=False, write=lines.append, source=source, bus=bus, poll=0)
    assert [r["run_id"] for r in reports] == [p.run_id for p in plans]
    topics = wiring.topics()
    for p in plans:
        assert len(bus.messages(topics.jobs(p.target.name))) == len(p.jobs) == 5
        assert f"run {p.run_id} ({p.target.name}): published 5 jobs, {p.expected_judgments} judgments expected" in lines
    # the second poll: 2 of the first run's prompts answered since the baseline, 2 judgments stored
    assert any(line.startswith(f"generate {plans[0].run_id}: 2/5") for line in lines)
    assert any(line.startswith(f"judge    {plans[0].run_id}: 2/") for line in lines)

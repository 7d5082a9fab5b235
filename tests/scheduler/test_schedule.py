"""Issue 7, targets and schedules as data: parsing with errors naming file and key, cron fire
times (croniter), stratified sampling with a fixed seed, and the long-lived loop on a fake clock."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from trustwatch.platform.bus import MemoryBus, Topics
from trustwatch.platform.store import Store
from trustwatch.scheduler.core import slot_run_id
from trustwatch.scheduler.main import ScheduleLoop
from trustwatch.scheduler.schedule import (
    ScheduleError,
    load_config,
    next_slot,
    parse_config,
    stratified_sample,
)
from trustwatch.v1 import messages_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
UTC = timezone.utc
T1 = "vllm:m1?name=one"
T2 = "openai:m2@http://gw.example/v1?name=two&key_env=OPENAI_API_KEY"
CONFIG: dict[str, Any] = {
    "targets": {"one": T1, "two": T2},
    "suites": {"small": {"tasks": [{"task": "truthfulness/external", "limit": 30}]}},
    "schedules": {"every-minute": {"cron": "* * * * *", "suite": "small", "sample": 6}},
}


def test_example_config_parses():
    cfg = load_config(ROOT / "suites" / "schedule.example.yaml")
    assert {s.name for s in cfg.schedules} == {"daily-sampled", "weekly-full"}
    assert all(len(s.targets) == 2 for s in cfg.schedules)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cron": "61 * * * *"}, "f.yaml: schedules.every-minute.cron"),
        ({"cron": "@daily please"}, "f.yaml: schedules.every-minute.cron"),
        ({"suite": "nope"}, "f.yaml: schedules.every-minute.suite: 'nope'"),
        ({"targets": ["one", "three"]}, "f.yaml: schedules.every-minute.targets: 'three'"),
        ({"sample": 0}, "f.yaml: schedules.every-minute.sample"),
        ({"sample": 5, "seed": -1}, "f.yaml: schedules.every-minute.seed"),
        ({"every": 3}, "f.yaml: schedules.every-minute: unknown key(s) every"),
    ],
)
def test_schedule_errors_name_file_and_key(change, message):
    data = {**CONFIG, "schedules": {"every-minute": {**CONFIG["schedules"]["every-minute"], **change}}}
    with pytest.raises(ScheduleError) as exc:
        parse_config(data, "f.yaml")
    assert message in str(exc.value)


def test_config_errors_name_file_and_key(tmp_path):
    with pytest.raises(ScheduleError, match="f.yaml: targets.one: the target's name is 'm1'"):
        parse_config({**CONFIG, "targets": {"one": "vllm:m1"}}, "f.yaml")
    with pytest.raises(ScheduleError, match="f.yaml: targets.bad: cannot parse target"):
        parse_config({**CONFIG, "targets": {"bad": "nonsense"}}, "f.yaml")
    with pytest.raises(ScheduleError, match="f.yaml: suites.small: .*unknown task"):
        parse_config({**CONFIG, "suites": {"small": {"tasks": ["no/such"]}}}, "f.yaml")
    with pytest.raises(ScheduleError, match="f.yaml: suites.small: suite file .* does not exist"):
        parse_config({**CONFIG, "suites": {"small": "missing.yaml"}}, "f.yaml")
    with pytest.raises(ScheduleError, match="f.yaml: unknown key"):
        parse_config({**CONFIG, "extra": 1}, "f.yaml")
    bad = tmp_path / "s.yaml"
    bad.write_text("targets: [\n")
    with pytest.raises(ScheduleError, match="s.yaml is not valid YAML"):
        load_config(bad)
    with pytest.raises(ScheduleError, match="does not exist"):
        load_config(tmp_path / "none.yaml")


def test_cron_next_fire_times():
    at = datetime(2026, 3, 1, 2, 0, 30, tzinfo=UTC)
    assert next_slot("0 2 * * *", at) == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    assert next_slot("*/15 * * * *", at) == datetime(2026, 3, 1, 2, 15, tzinfo=UTC)
    assert next_slot("0 4 * * 0", at) == datetime(2026, 3, 1, 4, 0, tzinfo=UTC)  # 2026-03-01 is a Sunday
    cfg = parse_config(CONFIG, "f.yaml")
    s = cfg.schedules[0]
    assert s.latest_slot(at) == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    assert s.latest_slot(datetime(2026, 3, 1, 2, 0, tzinfo=UTC)) == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


@dataclass
class _Item:
    item_id: str
    record: dict[str, Any] = field(default_factory=dict)


def test_stratified_sampling_is_deterministic_per_seed_and_stratified():
    items = [_Item(str(i), {"source": "a"}) for i in range(60)]
    items += [_Item(str(60 + i), {"source": "b"}) for i in range(30)]
    items += [_Item(str(90 + i), {"source": "c"}) for i in range(10)]
    items += [_Item("x", {})]  # no source: its own stratum
    one = stratified_sample(items, 20, seed=7)
    assert [i.item_id for i in one] == [i.item_id for i in stratified_sample(items, 20, seed=7)]
    assert [i.item_id for i in one] != [i.item_id for i in stratified_sample(items, 20, seed=8)]
    counts = Counter(i.record.get("source", "") for i in one)
    assert len(one) == 20 and set(counts) == {"a", "b", "c", ""}
    assert counts["a"] > counts["b"] > counts["c"] >= 1  # proportional, every stratum represented
    assert [int(i.item_id) for i in one if i.item_id != "x"] == sorted(
        int(i.item_id) for i in one if i.item_id != "x"
    )  # original order kept
    assert stratified_sample(items, 1000, seed=7) == items


def test_sampled_plans_share_items_across_runs(data_dir):
    cfg = parse_config(CONFIG, "f.yaml")
    s = cfg.schedules[0]
    from trustwatch.benchmark.evaluators.base import EvaluatorSettings
    from trustwatch.scheduler.core import build_plan, prepare

    a = build_plan(prepare(s.suite, s.targets[0], data_dir, EvaluatorSettings(), s.sample), "a")
    b = build_plan(prepare(s.suite, s.targets[0], data_dir, EvaluatorSettings(), s.sample), "b")
    assert len(a.jobs) == 6 and [j.ref.item_id for j in a.jobs] == [j.ref.item_id for j in b.jobs]
    assert a.manifest["sample"] == {"n": 6, "seed": s.sample.seed}


class _Clock:
    def __init__(self, start: datetime) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.t += timedelta(seconds=seconds)
        return False


def test_loop_fires_due_slots_for_two_targets_over_the_memory_bus(data_dir):
    cfg = parse_config(
        {**CONFIG, "schedules": {"hourly": {"cron": "0 * * * *", "suite": "small", "sample": 6}}}, "f.yaml"
    )
    clock = _Clock(datetime(2026, 3, 1, 2, 59, 30, tzinfo=UTC))
    bus, topics, store = MemoryBus(), Topics(), Store("sqlite:///:memory:")
    fired: list[dict[str, Any]] = []
    loop = ScheduleLoop(cfg, data_dir, bus, topics, store, now=clock.now, sleep=clock.sleep, on_fire=fired.append)
    loop.run(max_steps=1)
    # At start the latest slot (02:00) is caught up; then it sleeps 30 s and fires 03:00.
    slots = [datetime(2026, 3, 1, 2, 0, tzinfo=UTC), datetime(2026, 3, 1, 3, 0, tzinfo=UTC)]
    assert clock.sleeps == [30.0]
    assert [(f["run_id"], f["status"], f["published"]) for f in fired] == [
        (slot_run_id("hourly", t, name), "new", 6) for t in slots for name in ("one", "two")
    ]
    for name in ("one", "two"):
        jobs = [pb.PromptJob.FromString(m.value) for m in bus.messages(topics.jobs(name))]
        assert {j.ref.run_id for j in jobs} == {slot_run_id("hourly", t, name) for t in slots}
        assert len(jobs) == 12 and {j.target.name for j in jobs} == {name}
    run = store.run(slot_run_id("hourly", slots[1], "two"))
    assert run is not None and run.manifest["schedule"]["name"] == "hourly"
    assert run.manifest["judges_hash"] and run.manifest["sample"]["n"] == 6

    # A restart (a retried pod) in the same hour resumes the slot's runs: nothing is duplicated.
    fired.clear()
    again = ScheduleLoop(cfg, data_dir, bus, topics, store, now=clock.now, sleep=clock.sleep, on_fire=fired.append)
    again.catch_up()
    assert [(f["run_id"], f["status"]) for f in fired] == [
        (slot_run_id("hourly", slots[1], n), "resumed") for n in ("one", "two")
    ]
    # Once the slot's runs are complete (a judgment for every pair of the plans they published),
    # catch-up publishes nothing.
    for name in ("one", "two"):
        rid = slot_run_id("hourly", slots[1], name)
        events = [pb.RunEvent.FromString(m.value) for m in bus.messages(topics.runs)]
        planned = {(p.job_id, p.evaluator): p for e in events if e.run_id == rid for p in e.planned}
        assert len(planned) == 6
        store.store_judgments(
            [
                pb.Judgment(
                    ref=pb.JobRef(job_id=p.job_id, run_id=rid, task=p.task, item_id=p.item_id, target=name),
                    evaluator=p.evaluator,
                )
                for p in planned.values()
            ]
        )
    fired.clear()
    again.catch_up()
    assert [f["status"] for f in fired] == ["complete", "complete"]


def test_loop_stops_when_sleep_is_interrupted(data_dir):
    cfg = parse_config(CONFIG, "f.yaml")
    store = Store("sqlite:///:memory:")
    t = datetime(2026, 3, 1, 2, 0, 10, tzinfo=UTC)
    loop = ScheduleLoop(
        cfg, data_dir, MemoryBus(), Topics(), store, now=lambda: t, sleep=lambda s: True, on_fire=lambda f: None
    )
    loop.run()  # returns: the (fake) SIGTERM arrived while sleeping
    assert loop.last["every-minute"] == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def test_scheduler_command_needs_suite_or_config(tmp_path, capsys):
    from trustwatch.cli import main

    assert main(["scheduler"]) == 2
    assert "--suite" in capsys.readouterr().err
    cfg = tmp_path / "s.yaml"
    cfg.write_text("targets: {one: 'vllm:m1?name=one'}\nsuites: {s: {tasks: [safety/misuse]}}\nschedules: {}\n")
    assert main(["scheduler", "--config", str(cfg), "--db", "sqlite:///:memory:"]) == 2
    assert f"{cfg}: schedules must be a non-empty mapping" in capsys.readouterr().err
    assert main(["scheduler", "--config", str(cfg), "--suite", "x.yaml"]) == 2

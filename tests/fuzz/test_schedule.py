"""Fuzzing schedule files (scheduler/schedule.py): parse_config over arbitrary mappings and load_config
over arbitrary YAML files raise ScheduleError only, and every schedule they accept can be fired
(its cron has a next and a latest slot). stratified_sample keeps its contract for any items."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from tests.fuzz._fuzz import any_text, fuzz, json_values, small_texts, utf8_text
from tests.fuzz.test_suite import suites
from trustwatch.benchmark.tasks.base import TaskItem
from trustwatch.scheduler.schedule import (
    ScheduleConfig,
    ScheduleError,
    load_config,
    parse_config,
    slots_due,
    stratified_sample,
)

NAMES = ["prod", "staging", "daily", "a", "b.c", "-x", "", "x" * 70, "bad name"]
names = st.one_of(st.sampled_from(NAMES), utf8_text, st.integers(), st.none())
TARGETS = [
    "openai:m@https://h.example/v1?name=prod&key_env=PROD_API_KEY",
    "openai:m@https://h.example/v1?name=staging",
    "vllm:/models/x?name=daily",
    "vllm:/models/prod",
    "openai:m@https://u:p@h/v1?name=prod",
    "echo:a",
    "nonsense",
]
CRONS = [
    "0 2 * * *",
    "*/5 * * * *",
    "0 0 29 2 *",
    "0 0 30 2 *",
    "0 0 31 4 *",
    "* * * * * *",
    "61 * * * *",
    "@daily",
    "",
]
crons = st.one_of(st.sampled_from(CRONS), small_texts, json_values)
SUITE_FILES = ["good.yaml", "bad.yaml", "missing.yaml", "/nonexistent/abs.yaml", "../x.yaml", "\x00.yaml"]


def _config_maps() -> st.SearchStrategy[Any]:
    targets = st.dictionaries(names, st.one_of(st.sampled_from(TARGETS), json_values), max_size=3)
    suite_maps = st.dictionaries(names, st.one_of(st.sampled_from(SUITE_FILES), suites), max_size=3)
    schedule = st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "cron": crons,
                "suite": st.one_of(names, st.lists(names, max_size=2)),
                "targets": st.one_of(names, st.lists(names, max_size=3)),
                "sample": st.one_of(st.integers(-2, 10**20), json_values),
                "seed": st.one_of(st.integers(-2, 10**20), json_values),
                "description": json_values,
                "extra": json_values,
            },
        ),
    )
    full = st.fixed_dictionaries(
        {"targets": targets, "suites": suite_maps, "schedules": st.dictionaries(names, schedule, max_size=3)},
        optional={"other": json_values},
    )
    # Mostly consistent files, so that parsing gets past the names to the crons, samples and seeds.
    coherent = st.fixed_dictionaries(
        {
            "targets": st.just({"prod": TARGETS[0], "staging": TARGETS[1]}),
            "suites": st.dictionaries(st.sampled_from(["daily", "d2"]), st.sampled_from(SUITE_FILES[:2]), min_size=1),
            "schedules": st.dictionaries(
                st.sampled_from(["s1", "s2", "x y"]),
                st.fixed_dictionaries(
                    {"cron": crons, "suite": st.sampled_from(["daily", "d2", "none"])},
                    optional={
                        "targets": st.one_of(
                            st.sampled_from(["prod", "x"]), st.lists(st.sampled_from(["prod", "staging"]))
                        ),
                        "sample": st.one_of(st.integers(-1, 5), json_values),
                        "seed": st.one_of(st.integers(-1, 2**70), json_values),
                    },
                ),
                min_size=1,
                max_size=2,
            ),
        }
    )
    return st.one_of(json_values, full, coherent, coherent)


configs = _config_maps()
AT = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def _usable(config: ScheduleConfig) -> None:
    for s in config.schedules:
        assert s.targets and s.suite.tasks
        prev, nxt = s.latest_slot(AT), s.next_slot(AT)
        assert prev <= AT < nxt
    slots_due(config, AT - timedelta(days=400), AT)


def _folder(tmp: str) -> Path:
    base = Path(tmp)
    (base / "good.yaml").write_text("tasks: [truthfulness/external]\n", encoding="utf-8")
    (base / "bad.yaml").write_bytes(b"tasks: [\xff")
    return base


def test_parse_config_over_arbitrary_mappings(budget: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = _folder(tmp)

        @fuzz(budget, 100, 800, configs)
        def parses_or_says_why(data: Any) -> None:
            try:
                config = parse_config(data, "fuzz.yaml", base)
            except ScheduleError as exc:
                assert str(exc).startswith("fuzz.yaml"), str(exc)
                return
            _usable(config)


def test_load_config_over_arbitrary_files(budget: str) -> None:
    dumped = configs.map(lambda d: yaml.safe_dump(d, allow_unicode=True))
    mutated = st.tuples(dumped, st.integers(0, 400), any_text).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :])
    contents = st.one_of(
        st.one_of(small_texts, dumped, mutated).map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary()
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = _folder(tmp) / "schedule.yaml"

        @fuzz(budget, 50, 400, contents)
        def loads_or_says_why(content: bytes) -> None:
            path.write_bytes(content)
            try:
                config = load_config(path)
            except ScheduleError as exc:
                assert str(path) in str(exc), str(exc)
                return
            _usable(config)


def test_stratified_sample_contract(budget: str) -> None:
    records = st.one_of(json_values, st.fixed_dictionaries({"source": json_values}))
    items = st.lists(records, max_size=40).map(lambda rs: [TaskItem(str(i), "p", r) for i, r in enumerate(rs)])

    @fuzz(budget, 40, 300, items, st.integers(-3, 60), st.integers(0, 2**64))
    def samples(pool: list[TaskItem], n: int, seed: int) -> None:
        chosen = stratified_sample(pool, n, seed)
        assert len(chosen) == max(0, min(n, len(pool)))
        positions = [int(c.item_id) for c in chosen]
        assert positions == sorted(set(positions))
        assert stratified_sample(pool, n, seed) == chosen

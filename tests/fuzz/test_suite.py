"""Fuzzing suites (scheduler/suite.py): parse_suite over arbitrary mappings and load_suite over
arbitrary YAML files raise SuiteError only (a ValueError whose message names the file and the key),
and what they accept is a usable suite."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import strategies as st

from tests.fuzz._fuzz import any_text, fuzz, json_values, small_texts, utf8_text
from trustwatch.benchmark import tasks as task_registry
from trustwatch.scheduler.suite import Suite, SuiteError, load_suite, parse_suite

TASKS = sorted(task_registry.known())
SUITE_KEYS = ["name", "tasks", "seed", "samples", "max_tokens", "top_p", "targets", "description"]
TASK_KEYS = ["task", "limit", "temperature", "max_tokens"]

# Values a suite field might hold: plausible ones, edge numbers and arbitrary JSON/YAML values.
numbers = st.one_of(
    st.integers(-5, 5),
    st.sampled_from([0, 1, 2**31, 2**63, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
values = st.one_of(numbers, json_values, st.sampled_from(TASKS), st.lists(st.sampled_from(TASKS), max_size=3))
keys = st.one_of(st.sampled_from(SUITE_KEYS + TASK_KEYS), utf8_text, st.integers(), st.none(), st.booleans())
task_entries = st.one_of(
    st.sampled_from(TASKS),
    values,
    st.dictionaries(st.one_of(st.sampled_from(TASK_KEYS), keys), st.one_of(values, st.sampled_from(TASKS)), max_size=4),
)
suites = st.one_of(
    json_values,
    st.dictionaries(
        st.one_of(st.sampled_from(SUITE_KEYS), keys),
        st.one_of(values, st.lists(task_entries, max_size=4)),
        max_size=6,
    ),
    st.fixed_dictionaries(
        {"tasks": st.lists(task_entries, min_size=1, max_size=4)},
        optional={k: values for k in SUITE_KEYS if k != "tasks"},
    ),
)


def _accepted(suite: Suite) -> None:
    assert suite.tasks and all(t.task in TASKS for t in suite.tasks)
    assert suite.samples >= 1 and suite.max_tokens >= 1 and 0.0 <= suite.top_p <= 1.0
    assert all(isinstance(t, str) for t in suite.targets)
    suite.canonical()


def test_parse_suite_over_arbitrary_mappings(budget: str) -> None:
    @fuzz(budget, 100, 800, suites)
    def parses_or_says_why(data: object) -> None:
        try:
            suite = parse_suite(data, "fuzz.yaml")
        except SuiteError as exc:
            assert str(exc).startswith("fuzz.yaml"), str(exc)
            return
        _accepted(suite)


def _yaml_texts() -> st.SearchStrategy[str]:
    dumped = suites.map(lambda d: yaml.safe_dump(d, allow_unicode=True))
    mutated = st.tuples(dumped, st.integers(0, 400), any_text).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :])
    return st.one_of(
        small_texts, dumped, mutated, st.just("&a [*a]"), st.just("[" * 1000), st.just("tasks: !!python/name:os.system")
    )


def test_load_suite_over_arbitrary_files(budget: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.yaml"

        @fuzz(budget, 40, 500, st.one_of(_yaml_texts().map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary()))
        def loads_or_says_why(content: bytes) -> None:
            path.write_bytes(content)
            try:
                suite = load_suite(path)
            except SuiteError as exc:
                assert str(path) in str(exc), str(exc)
                return
            _accepted(suite)

"""Fuzzing dataset loading (benchmark/tasks/base.py load_items, for every task): any file content, any
JSON shape, and real records with fields dropped, retyped or added, either load into items that can be
planned and put on the bus, or raise DatasetError (a ValueError naming the file and the record)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.fuzz._fuzz import fuzz, json_values, mutated_record, small_texts
from trustwatch.benchmark import evaluators as evaluator_registry
from trustwatch.benchmark import tasks as task_registry
from trustwatch.benchmark.tasks.base import DatasetError, Task, load_items
from trustwatch.platform.messages import dumps_record
from trustwatch.v1 import messages_pb2 as pb

TASKS = sorted(task_registry.known())
EVALUATORS = set(evaluator_registry.known())


def _contents(seeds: dict[str, list[dict[str, Any]]]) -> st.SearchStrategy[tuple[str, bytes, int | None]]:
    def records(name: str) -> st.SearchStrategy[bytes]:
        recs = st.lists(st.sampled_from(seeds[name]).flatmap(mutated_record), max_size=6)
        as_json = st.one_of(recs, json_values).map(
            lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")
        )
        escaped = recs.map(lambda v: json.dumps(v).encode("ascii"))  # \\uXXXX escapes: lone surrogates decode
        raw = st.one_of(
            st.binary(max_size=64),
            small_texts.map(lambda s: s.encode("utf-8", "surrogatepass")),
            st.sampled_from(
                [b"[" * 20_000, b"[{}]" * 3, b"[NaN, Infinity]", b'[{"prompt": "\\ud800x"}]', b"\xef\xbb\xbf[]"]
            ),
        )
        return st.one_of(as_json, escaped, raw)

    return st.sampled_from(TASKS).flatmap(
        lambda name: st.tuples(st.just(name), records(name), st.one_of(st.none(), st.integers(0, 4)))
    )


def _plannable(task: Task, items: list[Any]) -> None:
    for item in items:
        assert isinstance(item.prompt, str) and item.prompt.strip()
        assert task.prompt_field not in item.record
        assert all(f in item.record for f in task.required_fields)
        names = task.evaluators_for(item.record)
        assert names and set(names) <= EVALUATORS, names
        pb.PromptJob(prompt=item.prompt, record_json=dumps_record(item.record)).SerializeToString()


def test_load_items_over_arbitrary_files(budget: str, seeds: dict[str, list[dict[str, Any]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:

        @fuzz(budget, 120, 1000, _contents(seeds))
        def loads_or_says_why(case: tuple[str, bytes, int | None]) -> None:
            name, content, limit = case
            task = task_registry.get(name)
            path = Path(tmp) / task.dataset
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            try:
                items = load_items(task, Path(tmp), limit)
            except DatasetError as exc:
                assert str(path) in str(exc), str(exc)
                return
            assert limit is None or len(items) <= limit
            _plannable(task, items)

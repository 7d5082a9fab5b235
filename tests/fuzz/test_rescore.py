"""Fuzzing TrustLLM results files (tools/rescore.py, what `trustwatch evaluate --trustllm-results DIR`
reads): any file content, any JSON shape and real records with mutated fields and arbitrary replies
(`res`) give a per-file result (metrics, or an error or warnings saying what is wrong), never an
exception, and the result can be written as UTF-8 JSON."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from tests.fuzz._fuzz import fuzz, json_values, mutated_record, small_texts
from tests.fuzz.test_datasets import TASKS
from trustwatch.benchmark import tasks as task_registry
from trustwatch.benchmark.evaluators.base import Evaluator
from trustwatch.judge.offline import OfflineEvaluators, _OfflineJudge
from trustwatch.tools.rescore import evaluate_results, score_file

#: Evaluators that run a local embedding model: replaced by the offline placeholder, so that the fuzz
#: cases exercise rescoring (reading, items, metrics), not model inference (tests/benchmark covers it).
MODEL_BACKED = {"embedding", "persona_similarity"}


class _Client(OfflineEvaluators):
    def get(self, name: str) -> Evaluator:
        return _OfflineJudge() if name in MODEL_BACKED else super().get(name)


def _results(seeds: dict[str, list[dict[str, Any]]]) -> st.SearchStrategy[tuple[str, bytes]]:
    def with_res(name: str) -> st.SearchStrategy[Any]:
        reply = st.one_of(small_texts, json_values, st.just(None))
        rec = st.sampled_from(seeds.get(name, [{}])).flatmap(mutated_record)
        return st.tuples(rec, reply, st.booleans()).map(
            lambda t: {**t[0], "res": t[1]} if isinstance(t[0], dict) and t[2] else t[0]
        )

    def content(name: str) -> st.SearchStrategy[bytes]:
        recs = st.lists(with_res(name), max_size=6)
        return st.one_of(
            recs.map(lambda v: json.dumps(v).encode("ascii")),  # lone surrogates as \\ud800 escapes
            st.one_of(recs, json_values).map(
                lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")
            ),
            st.binary(max_size=64),
            st.sampled_from([b"[" * 20_000, b"[NaN]", b'[{"res": "\\udfff"}]', b"\xef\xbb\xbf[]"]),
        )

    return st.sampled_from([*TASKS, "truthfulness/not_a_task"]).flatmap(lambda n: st.tuples(st.just(n), content(n)))


def _check(result: dict[str, Any]) -> None:
    assert set(result) >= {"metrics", "n_items"}
    json.dumps(result, default=str, allow_nan=True).encode("utf-8")


def test_score_file_over_arbitrary_results(budget: str, seeds: dict[str, list[dict[str, Any]]]) -> None:
    client = _Client()
    with tempfile.TemporaryDirectory() as tmp:

        @fuzz(budget, 80, 700, _results(seeds))
        def scores_or_says_why(case: tuple[str, bytes]) -> None:
            key, content = case
            path = Path(tmp) / f"{key}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            out = score_file(path, key, client, None, offline=True).to_json()
            _check(out)
            if key not in task_registry.known():
                assert "not a TrustLLM file" in out["error"]
            try:
                records = json.loads(content.decode("utf-8"), strict=False)
            except (ValueError, RecursionError):
                return
            if isinstance(records, list) and "error" not in out:
                assert out["n_items"] == len(records)


def test_evaluate_results_over_a_folder(budget: str, seeds: dict[str, list[dict[str, Any]]]) -> None:
    light = [t for t in TASKS if not set(task_registry.get(t).evaluators) & MODEL_BACKED]
    files = st.dictionaries(st.sampled_from([*light, "x/y"]), st.sampled_from([b"[]", b"{}", b"\xff", b'[{"res": 1}]']))

    @fuzz(budget, 5, 40, files)
    def each_file_reported(case: dict[str, bytes]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for key, content in case.items():
                (Path(tmp) / key).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / f"{key}.json").write_bytes(content)
            if not case:
                with pytest.raises(FileNotFoundError, match="no <dimension>/<file>.json files"):
                    evaluate_results(Path(tmp), offline=True)
                return
            out = evaluate_results(Path(tmp), offline=True)
            assert set(out) == set(case)
            for result in out.values():
                _check(result)
